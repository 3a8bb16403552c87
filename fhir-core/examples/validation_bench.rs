//! Measures loading the R4 definitions and validating resources. A benchmark, not a test: it
//! prints times and asserts nothing about them.
//!
//!   cargo run --release -p fhir-core --example validation_bench [EXAMPLES_DIR]
//!
//! EXAMPLES_DIR defaults to `$FHIR_R4_EXAMPLES` or `~/.cache/fhir-r4-examples`
//! (`scripts/fetch-examples` fills it).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fhir_core::summary::{summarize, SummaryMode};
use fhir_core::validation::validate_resource;
use serde_json::Value;

fn main() {
    let start = Instant::now();
    let definitions = fhir_core::r4();
    println!("load definitions: {:?} ({} resource types)", start.elapsed(), definitions.resource_types().count());

    let start = Instant::now();
    black_box(validate_resource(&serde_json::json!({"resourceType": "Patient", "birthDate": "2000"})));
    println!("first validation (compiles the regexes): {:?}", start.elapsed());

    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(examples_dir);
    let mut examples: Vec<(String, Value, usize)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let text = std::fs::read_to_string(&path).expect("readable example");
            let value = serde_json::from_str(&text).expect("JSON example");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let size = serde_json::to_string(&value).map(|s| s.len()).unwrap_or_default();
            examples.push((name, value, size));
        }
    }
    examples.sort_by(|a, b| a.0.cmp(&b.0));

    for name in ["Patient-example.json", "Observation-example.json", "Questionnaire-qs1.json"] {
        if let Some((_, value, size)) = examples.iter().find(|(n, _, _)| n == name) {
            let per = time(20_000, || {
                black_box(validate_resource(black_box(value)));
            });
            let summary = time(20_000, || {
                black_box(summarize(black_box(value), SummaryMode::True));
            });
            println!("{name} ({size} bytes compact): validate {per:?}, _summary=true {summary:?}");
        }
    }

    let total_bytes: usize = examples.iter().map(|(_, _, size)| size).sum();
    let per_pass = time(5, || {
        for (_, value, _) in &examples {
            black_box(validate_resource(black_box(value)));
        }
    });
    println!(
        "all {} examples ({:.1} MB compact): {per_pass:?} per pass, {:.0} MB/s",
        examples.len(),
        total_bytes as f64 / 1e6,
        total_bytes as f64 / per_pass.as_secs_f64() / 1e6
    );
}

fn time(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FHIR_R4_EXAMPLES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fhir-r4-examples")
}
