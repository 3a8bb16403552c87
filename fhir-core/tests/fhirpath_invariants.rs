//! The FHIRPath engine against the invariants of the core R4 StructureDefinitions
//! (`ElementDefinition.constraint.expression`, 14,750 of them, 203 distinct expressions): every
//! one compiles, both as an [`Invariant`] and in the `P.all(expression)` form, and every one that
//! applies to an official R4 example is evaluated on it without error. The examples are meant to
//! be valid, so an error-severity invariant that is false on one must be listed in
//! [`KNOWN_FALSE`] with the reason; warnings (dom-6 "should have a narrative", the `name` rules
//! of the canonical resources) are counted, not asserted. The three R4 invariants whose text
//! fails on valid content under FHIRPath N1 (ref-1, bdl-8, ras-2) are evaluated in their
//! corrected form ([`corrected_r4_expression`]), as a validator should.
//!
//! What applies to what:
//! - a resource's StructureDefinition: every instance of that type: each example, each resource
//!   of a Bundle's entries (as its own resource) and each contained resource (with its container
//!   as `%rootResource`);
//! - a resource profile (vital signs...): the instances that claim it in `meta.profile`;
//! - a datatype's StructureDefinition (and the Quantity profiles): every element of that type,
//!   found by walking each instance's children, with the instance as `%resource`;
//! - an extension definition: every extension with its URL.
//!
//! Elements of slices (an `id` with `:`) are only compiled: they apply to the slice's members.
//!
//! The StructureDefinitions come from the npm tarball of hl7.fhir.r4.examples@4.0.1: the file
//! `$FHIR_R4_EXAMPLES_TARBALL` when set, else the one `scripts/fetch-examples --tarball-only`
//! downloads (once) into `$HOME/.cache/fhir-r4-examples-package`. The example instances come
//! from `scripts/fetch-examples` into `${FHIR_R4_EXAMPLES:-$HOME/.cache/fhir-r4-examples}`, as
//! for the other example tests. Missing data fails the test; it never skips it.

#[path = "support/r4_examples.rs"]
mod r4_examples;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fhir_core::fhirpath::{compile, corrected_r4_expression, Expression, FhirPathError, Invariant, Item};
use serde::Deserialize;
use serde_json::Value;

/// Error-severity invariants that are false on official examples: (keys, example, why). Each
/// must still be false there, so that the list cannot go stale.
const KNOWN_FALSE: &[(&[&str], &str, &str)] = &[
    // txt-1 and txt-2 are both `htmlChecks()`.
    (&["txt-1", "txt-2"], "ActivityDefinition-blood-tubes-supply.json", "its narrative div is empty"),
    (&["txt-1", "txt-2"], "ActivityDefinition-heart-valve-replacement.json", "its narrative div is empty"),
    (&["txt-1", "txt-2"], "EventDefinition-example.json", "its narrative div is empty"),
    (&["txt-1", "txt-2"], "Questionnaire-zika-virus-exposure-assessment.json", "its narrative is an empty <pre>"),
];

/// Bundles of the spec's own definitions that are not read: past [`MAX_INSTANCES_PER_TYPE`]
/// their resources would not be evaluated anyway (StructureDefinitions, ValueSets and
/// CodeSystems come from Bundle-resources, Bundle-v2-valuesets and Bundle-terminologies), and
/// they are 60 of the examples' 110 MB. (Bundle-dataelements.json breaks bdl-7: it repeats
/// fullUrls, de-Quantity.value and others three times each.)
const UNREAD: &[&str] = &[
    "Bundle-dataelements.json",
    "Bundle-extensions.json",
    "Bundle-profiles-others.json",
    "Bundle-types.json",
    "Bundle-v3-valuesets.json",
    "Bundle-valueset-expansions.json",
    "Bundle-valuesets.json",
];

/// The most instances of one resource type evaluated: the conformance bundles hold thousands of
/// StructureDefinitions, ValueSets and SearchParameters, and the first ones (in file order)
/// exercise their invariants as well as all of them would, in a fraction of the time.
const MAX_INSTANCES_PER_TYPE: usize = 50;

/// The most evaluations of one datatype's invariants: the first StructureDefinitions alone hold
/// hundreds of thousands of strings, and thousands of ElementDefinitions with 130 invariants
/// each.
const MAX_EVALUATIONS_PER_DATATYPE: usize = 40_000;

struct Definition {
    url: String,
    name: String,
    kind: String,
    derivation: String,
    type_name: String,
    is_abstract: bool,
}

struct Constraint {
    definition: usize,
    element_id: String,
    path: String,
    key: String,
    severity: String,
    expression: String,
}

/// An instance to validate: a resource, and the resource it is contained in (or itself).
struct Instance<'a> {
    label: String,
    resource: &'a Value,
    root: &'a Value,
}

fn script() -> PathBuf {
    r4_examples::fetch_script()
}

/// The package tarball: `$FHIR_R4_EXAMPLES_TARBALL`, or downloaded once into the cache.
fn tarball() -> PathBuf {
    if let Some(path) = std::env::var_os("FHIR_R4_EXAMPLES_TARBALL") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "FHIR_R4_EXAMPLES_TARBALL={} is not a file", path.display());
        return path;
    }
    let dir = Path::new(&std::env::var_os("HOME").expect("HOME is set, or FHIR_R4_EXAMPLES_TARBALL"))
        .join(".cache/fhir-r4-examples-package");
    let path = dir.join("hl7.fhir.r4.examples-4.0.1.tgz");
    if !path.is_file() {
        std::fs::create_dir_all(&dir).expect("cache directory");
        // Downloaded beside the final name and renamed, so that an interrupted download is never
        // taken for the package; fetch-examples checks the package's integrity.
        let partial = dir.join("download");
        std::fs::create_dir_all(&partial).expect("download directory");
        let output = Command::new("bash")
            .arg(script())
            .args(["--tarball-only".as_ref(), partial.as_os_str()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/fetch-examples: {e}"));
        assert!(
            output.status.success(),
            "scripts/fetch-examples --tarball-only failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let downloaded = String::from_utf8(output.stdout).expect("a path");
        std::fs::rename(downloaded.trim(), &path).expect("move the tarball into the cache");
        let _ = std::fs::remove_dir(&partial);
    }
    path
}

/// The parts of a StructureDefinition read here (a typed read skips the rest quickly).
#[derive(Deserialize)]
struct StructureDefinitionJson {
    url: String,
    name: String,
    kind: String,
    #[serde(default)]
    derivation: String,
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default, rename = "abstract")]
    is_abstract: bool,
    snapshot: Option<SnapshotJson>,
}

#[derive(Deserialize)]
struct SnapshotJson {
    element: Vec<ElementJson>,
}

#[derive(Deserialize)]
struct ElementJson {
    #[serde(default)]
    id: String,
    path: String,
    #[serde(default)]
    constraint: Vec<ConstraintJson>,
}

#[derive(Deserialize)]
struct ConstraintJson {
    key: String,
    #[serde(default)]
    severity: String,
    expression: Option<String>,
}

/// The StructureDefinitions of the package and their constraints with an expression.
fn load_definitions() -> (Vec<Definition>, Vec<Constraint>) {
    let unpacked = tempfile::tempdir().expect("temporary directory");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(tarball())
        .arg("-C")
        .arg(unpacked.path())
        .args(["--wildcards", "package/StructureDefinition-*.json"])
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar could not unpack the StructureDefinitions: {status}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(unpacked.path().join("package"))
        .expect("unpacked package")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    let mut definitions = Vec::new();
    let mut constraints = Vec::new();
    for file in files {
        let json: StructureDefinitionJson = serde_json::from_slice(&std::fs::read(&file).expect("readable"))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let definition = definitions.len();
        for element in json.snapshot.into_iter().flat_map(|snapshot| snapshot.element) {
            for constraint in element.constraint {
                let Some(expression) = constraint.expression else {
                    continue;
                };
                constraints.push(Constraint {
                    definition,
                    element_id: element.id.clone(),
                    path: element.path.clone(),
                    key: constraint.key,
                    severity: constraint.severity,
                    expression,
                });
            }
        }
        definitions.push(Definition {
            url: json.url,
            name: json.name,
            kind: json.kind,
            derivation: json.derivation,
            type_name: json.type_name,
            is_abstract: json.is_abstract,
        });
    }
    assert!(definitions.len() >= 650, "only {} StructureDefinitions in the package", definitions.len());
    (definitions, constraints)
}

fn load_examples() -> Vec<(String, Value)> {
    r4_examples::load(UNREAD)
}

/// The resource and the resources within it: contained ones (with it as their root) and any
/// other nested resource (Bundle entries, Parameters values) as a root of its own.
fn collect_instances<'a>(label: String, resource: &'a Value, root: &'a Value, out: &mut Vec<Instance<'a>>) {
    out.push(Instance { label: label.clone(), resource, root });
    let Some(object) = resource.as_object() else {
        return;
    };
    for (key, value) in object {
        if key == "contained" {
            for (i, contained) in value.as_array().into_iter().flatten().enumerate() {
                collect_instances(format!("{label} contained[{i}]"), contained, root, out);
            }
        } else {
            nested_resources(&format!("{label} {key}"), value, out);
        }
    }
}

fn nested_resources<'a>(label: &str, value: &'a Value, out: &mut Vec<Instance<'a>>) {
    match value {
        Value::Object(object) if object.contains_key("resourceType") => {
            collect_instances(label.to_string(), value, value, out);
        }
        Value::Object(object) => {
            for (key, child) in object {
                nested_resources(&format!("{label}.{key}"), child, out);
            }
        }
        Value::Array(values) => {
            for (i, child) in values.iter().enumerate() {
                nested_resources(&format!("{label}[{i}]"), child, out);
            }
        }
        _ => {}
    }
}

/// The elements of an instance (not the instance itself), not entering nested resources.
fn elements<'a>(instance: &Instance<'a>, children: &Expression) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    let mut pending = vec![Item::resource(instance.resource)];
    while let Some(item) = pending.pop() {
        let found = children.evaluate_in(instance.root, instance.resource, &item).expect("children() evaluates");
        for child in found {
            if child.json().is_some_and(|node| node.get("resourceType").is_some()) {
                continue;
            }
            pending.push(child.clone());
            out.push(child);
        }
    }
    out
}

/// The `P.all(expression)` form a validator may compile instead of an [`Invariant`].
fn all_form(path: &str, expression: &str) -> String {
    // The line breaks keep a `//` comment in the expression from swallowing the parenthesis.
    format!("{}.all(\n{expression}\n)", path.replace("[x]", ""))
}

#[derive(Default)]
struct Outcome {
    evaluations: usize,
    errors: Vec<String>,
    /// Error-severity invariants that were false: (key, instance label) -> description.
    false_errors: BTreeMap<(String, String), String>,
    /// Warnings that were false, counted by key.
    false_warnings: BTreeMap<String, usize>,
}

impl Outcome {
    fn record(&mut self, constraint: &Constraint, label: &str, result: Result<Vec<Item<'_>>, FhirPathError>) {
        self.evaluations += 1;
        match result {
            Err(error) => self.errors.push(format!(
                "{} ({}) on {label}: {error}\n    {}",
                constraint.key, constraint.path, constraint.expression
            )),
            Ok(violations) if violations.is_empty() => {}
            Ok(_) if constraint.severity == "error" => {
                let file = label.split(' ').next().unwrap_or(label).to_string();
                self.false_errors.entry((constraint.key.clone(), file)).or_insert_with(|| {
                    format!("{label}: {} ({}) {}", constraint.key, constraint.path, constraint.expression)
                });
            }
            Ok(_) => *self.false_warnings.entry(constraint.key.clone()).or_default() += 1,
        }
    }
}

#[test]
fn every_r4_invariant_compiles_and_holds_on_the_r4_examples() {
    let started = Instant::now();
    let (definitions, constraints) = load_definitions();
    let examples = load_examples();
    let loaded = started.elapsed();

    // Compile: each (path, expression) once, in both forms.
    let mut compiled: HashMap<(&str, &str), Invariant> = HashMap::new();
    let mut all_forms: HashMap<(&str, &str), Expression> = HashMap::new();
    let mut compile_errors = Vec::new();
    for constraint in &constraints {
        let key = (constraint.path.as_str(), constraint.expression.as_str());
        if compiled.contains_key(&key) {
            continue;
        }
        if let Err(error) = compile(&all_form(&constraint.path, &constraint.expression)) {
            compile_errors.push(format!(
                "{} ({}) as P.all(): {error}\n    {}",
                constraint.key, constraint.path, constraint.expression
            ));
        }
        let expression = corrected_r4_expression(&constraint.key, &constraint.expression);
        if let Ok(all) = compile(&all_form(&constraint.path, expression)) {
            all_forms.insert(key, all);
        }
        match Invariant::compile(&constraint.path, expression) {
            Ok(invariant) => {
                compiled.insert(key, invariant);
            }
            Err(error) => compile_errors
                .push(format!("{} ({}): {error}\n    {}", constraint.key, constraint.path, constraint.expression)),
        }
    }
    assert!(compile_errors.is_empty(), "{} do not compile:\n{}", compile_errors.len(), compile_errors.join("\n"));
    let distinct_expressions: HashSet<&str> = constraints.iter().map(|c| c.expression.as_str()).collect();
    assert!(constraints.len() >= 14_000, "only {} invariants in the package", constraints.len());
    assert!(distinct_expressions.len() >= 200, "only {} distinct expressions", distinct_expressions.len());

    // Where each constraint applies.
    let mut by_resource_type: HashMap<&str, Vec<&Constraint>> = HashMap::new();
    let mut by_profile: HashMap<&str, Vec<&Constraint>> = HashMap::new();
    let mut by_datatype: HashMap<&str, Vec<&Constraint>> = HashMap::new();
    let mut by_extension_url: HashMap<&str, Vec<&Constraint>> = HashMap::new();
    let mut applicable = 0usize;
    for constraint in &constraints {
        let definition = &definitions[constraint.definition];
        if constraint.element_id.contains(':') {
            continue;
        }
        let target = match (definition.kind.as_str(), definition.derivation.as_str()) {
            ("resource", "specialization") if !definition.is_abstract => by_resource_type.entry(&definition.type_name),
            ("resource", "constraint") => by_profile.entry(&definition.url),
            ("complex-type", "constraint") if definition.type_name == "Extension" => {
                by_extension_url.entry(&definition.url)
            }
            // Datatype profiles are by name (SimpleQuantity), as elements are typed.
            ("complex-type" | "primitive-type", "constraint") => by_datatype.entry(&definition.name),
            ("complex-type" | "primitive-type", "specialization") => by_datatype.entry(&definition.type_name),
            // Abstract resources (their invariants are in each resource's snapshot) and logical
            // models.
            _ => continue,
        };
        target.or_default().push(constraint);
        applicable += 1;
    }

    let mut instances = Vec::new();
    for (name, json) in &examples {
        collect_instances(name.clone(), json, json, &mut instances);
    }
    let mut per_type: HashMap<&str, usize> = HashMap::new();
    instances.retain(|instance| {
        let resource_type = instance.resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let count = per_type.entry(resource_type).or_default();
        *count += 1;
        *count <= MAX_INSTANCES_PER_TYPE
    });

    let children = compile("children()").expect("compiles");
    let mut outcome = Outcome::default();
    let mut evaluated: HashSet<(&str, &str)> = HashSet::new();
    let mut datatype_elements = 0usize;
    let mut all_form_mismatches = Vec::new();
    let mut evaluations_per_type: HashMap<&str, usize> = HashMap::new();
    for instance in &instances {
        let resource_type = instance.resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let mut applying: Vec<&Constraint> = by_resource_type.get(resource_type).cloned().unwrap_or_default();
        for profile in instance.resource.pointer("/meta/profile").and_then(Value::as_array).into_iter().flatten() {
            applying.extend(profile.as_str().and_then(|url| by_profile.get(url)).into_iter().flatten());
        }
        let root = Item::resource(instance.resource);
        for constraint in applying {
            let key = (constraint.path.as_str(), constraint.expression.as_str());
            let violations = compiled[&key].violations(instance.root, instance.resource, &root);
            evaluated.insert(key);
            // The `P.all(expression)` form gives the same answer on the resource, except where
            // the expression reads `%context` (which that form leaves at the resource). Checked on
            // the example files themselves, not the resources within them, to save time.
            if std::ptr::eq(instance.resource, instance.root)
                && !instance.label.contains(' ')
                && !constraint.expression.contains("%context")
            {
                let all = all_forms[&key].evaluate_in(instance.root, instance.resource, &root);
                let holds = all.as_ref().ok().map(|items| items.first().and_then(Item::as_bool));
                let expected = violations.as_ref().ok().map(|v| Some(v.is_empty()));
                if holds != expected {
                    all_form_mismatches
                        .push(format!("{} ({}) on {}: {all:?}", constraint.key, constraint.path, instance.label));
                }
            }
            outcome.record(constraint, &instance.label, violations);
        }
        for element in elements(instance, &children) {
            let Some(type_name) = element.fhir_type() else {
                continue;
            };
            let mut applying: Vec<&Constraint> = by_datatype.get(type_name).cloned().unwrap_or_default();
            if type_name == "Extension" {
                let url = element.json().and_then(|node| node.get("url")).and_then(Value::as_str);
                applying.extend(url.and_then(|url| by_extension_url.get(url)).into_iter().flatten());
            }
            let evaluations = evaluations_per_type.entry(type_name).or_default();
            if applying.is_empty() || *evaluations >= MAX_EVALUATIONS_PER_DATATYPE {
                continue;
            }
            *evaluations += applying.len();
            datatype_elements += 1;
            let label = format!("{} {type_name}", instance.label);
            for constraint in applying {
                let invariant = &compiled[&(constraint.path.as_str(), constraint.expression.as_str())];
                evaluated.insert((constraint.path.as_str(), constraint.expression.as_str()));
                outcome.record(constraint, &label, invariant.violations(instance.root, instance.resource, &element));
            }
        }
    }

    eprintln!(
        "{} invariants ({} distinct expressions, {} distinct path+expression) compiled; {applicable} apply to \
         instances, {} of the distinct ones were evaluated {} times on {} instances and {datatype_elements} \
         datatype elements; loading took {loaded:?}, everything {:?}",
        constraints.len(),
        distinct_expressions.len(),
        compiled.len(),
        evaluated.len(),
        outcome.evaluations,
        instances.len(),
        started.elapsed(),
    );
    eprintln!("false warnings by key: {:?}", outcome.false_warnings);
    assert!(all_form_mismatches.is_empty(), "P.all() differs:\n{}", all_form_mismatches.join("\n"));
    assert!(outcome.errors.is_empty(), "{} evaluations failed:\n{}", outcome.errors.len(), outcome.errors.join("\n"));

    let mut problems = Vec::new();
    for ((key, file), description) in &outcome.false_errors {
        if !KNOWN_FALSE.iter().any(|(keys, f, _)| keys.contains(&key.as_str()) && f == file) {
            problems.push(format!("false: {description}"));
        }
    }
    for (keys, file, reason) in KNOWN_FALSE {
        for key in *keys {
            if !outcome.false_errors.contains_key(&(key.to_string(), file.to_string())) {
                problems.push(format!("{key} on {file} is listed as false ({reason}) but holds"));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
