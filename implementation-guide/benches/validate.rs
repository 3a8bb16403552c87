//! Profile validation speed: loading a package (unpack, index, expand its ValueSets), and
//! validating resources against their profiles, one thread, release build. Prints a table.
//!
//!   cargo bench -p implementation-guide --bench validate
//!
//! Uses the IPS package (`FHIR_IPS_PACKAGE`, or `scripts/fetch-package`'s cache) and the test
//! packages of `testdata/ig`.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use implementation_guide::{Conformance, Package};
use serde_json::Value;

fn ips_tarball() -> Vec<u8> {
    let path = std::env::var("FHIR_IPS_PACKAGE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/fhir-server/packages/hl7.fhir.uv.ips-2.0.0.tgz")
    });
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {} ({e}); run scripts/test or scripts/fetch-package first", path.display()))
}

fn ips_examples(tarball: &[u8]) -> Vec<Value> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut examples = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy().starts_with("package/example/") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            examples.push(serde_json::from_str(&text).unwrap());
        }
    }
    examples
}

/// Runs `work` (which handles `items` resources) for about two seconds; resources per second
/// and microseconds per resource.
fn rate(items: usize, mut work: impl FnMut()) -> (f64, f64) {
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(2) {
        work();
        rounds += 1;
    }
    let per_second = (rounds * items) as f64 / started.elapsed().as_secs_f64();
    (per_second, 1e6 / per_second)
}

fn main() {
    let tarball = ips_tarball();
    let started = Instant::now();
    let package = Package::from_tgz(&tarball).unwrap();
    let conformance = Conformance::new(&[package]);
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let examples: Vec<Value> = ips_examples(&tarball).into_iter().filter(|e| e.pointer("/meta/profile").is_some()).collect();
    let bundles: Vec<Value> = examples.iter().filter(|e| e["resourceType"] == "Bundle").cloned().collect();
    let others: Vec<Value> = examples.iter().filter(|e| e["resourceType"] != "Bundle").cloned().collect();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/ig");
    let vitals = Package::from_tgz(&implementation_guide::package::pack_dir(&root.join("fhir-server.test.vitals")).unwrap()).unwrap();
    let test = Conformance::new(&[vitals]);
    let patient: Value = serde_json::json!({
        "resourceType": "Patient", "meta": {"profile": ["http://fhir-server.dev/ig/test/StructureDefinition/test-patient"]},
        "extension": [{"url": "http://fhir-server.dev/ig/test/StructureDefinition/eye-colour", "valueCode": "hazel"}],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "42"}], "name": [{"family": "Chalmers"}], "gender": "female"});

    println!("| what | resources | per second | µs each |");
    println!("|---|---|---|---|");
    println!("| load hl7.fhir.uv.ips#2.0.0 (unpack, index, expand) | - | - | {:.0} ms once |", load_ms);
    let check = |name: &str, conformance: &Conformance, resources: &[Value]| {
        let (per_second, micros) = rate(resources.len(), || {
            for resource in resources {
                std::hint::black_box(conformance.validate_claimed(resource, &[]));
            }
        });
        println!("| {name} | {} | {per_second:.0} | {micros:.1} |", resources.len());
    };
    check("IPS examples, not documents", &conformance, &others);
    check("IPS documents (Bundles, every entry by profile)", &conformance, &bundles);
    check("test Patient profile (snapshot, extension slice)", &test, std::slice::from_ref(&patient));
}
