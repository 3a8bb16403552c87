//! Syntax: precedence, literals, names, and what does not compile.

use serde_json::json;

use super::*;
use crate::fhirpath::MAX_DEPTH;

#[test]
fn precedence_follows_the_operator_table() {
    let resource = empty();
    assert_all_true(
        &resource,
        &[
            "1 + 2 * 3 = 7",
            "(1 + 2) * 3 = 9",
            "2 - 1 - 1 = 0",
            "12 div 2 div 3 = 2",
            "-2 + 3 = 1",
            "-(1 + 2) = -3",
            "true or false and false",
            "(true or false) and true",
            // `implies` is right-associative: false implies (false implies false).
            "false implies false implies false",
            "1 < 2 = true",
            "1 | 2 = 1 | 2",
            // `is` binds tighter than `|`, so this is 'a' | ('b' is String).
            "('a' | 'b' is String).count() = 2",
            "'b' in 'a' | 'b'",
            "'a' & 'b' + 'c' = 'abc'",
        ],
    );
    assert_eq!(truth("(false implies false) implies false", &resource), Some(false));
}

#[test]
fn literals() {
    let resource = empty();
    assert_eq!(eval("'it\\'s'", &resource), [json!("it's")]);
    assert_eq!(eval("'tab\\tand \\u00e9'", &resource), [json!("tab\tand é")]);
    assert_eq!(eval("42", &resource), [json!(42)]);
    assert_eq!(eval("-4.5", &resource), [json!(-4.5)]);
    assert_eq!(eval("true", &resource), [json!(true)]);
    assert_eq!(eval("{}", &resource), Vec::<serde_json::Value>::new());
    assert_eq!(eval("@2020-01-02", &resource), [json!("2020-01-02")]);
    assert_eq!(eval("@2020-01-02T10:00:00.5+02:00", &resource), [json!("2020-01-02T10:00:00.5+02:00")]);
    assert_eq!(eval("@2020-01-02T", &resource), [json!("2020-01-02")]);
    assert_eq!(eval("@T10:30", &resource), [json!("10:30")]);
    assert_eq!(eval("4 'mg'", &resource), [json!({"value": 4.0, "unit": "mg"})]);
    assert_eq!(eval("2 days", &resource), [json!({"value": 2.0, "unit": "days"})]);
    assert_eq!(types_of("1.0", &resource), [Some("Decimal")]);
    assert_eq!(types_of("1", &resource), [Some("Integer")]);
    assert_eq!(types_of("@2020", &resource), [Some("Date")]);
    assert_eq!(types_of("@2020-01-01T10:00Z", &resource), [Some("DateTime")]);
    assert_eq!(types_of("@T10:00", &resource), [Some("Time")]);
}

#[test]
fn comments_and_delimited_identifiers() {
    let patient = patient();
    assert_eq!(eval("Patient.`gender` // the gender\n", &patient), [json!("male")]);
    assert_eq!(eval("/* block */ Patient . gender", &patient), [json!("male")]);
    // A keyword after a dot is a name.
    // (JSON without a resourceType is navigated without the definitions.)
    let odd = json!({"and": {"as": 1}});
    assert_eq!(eval("and.as", &odd), [json!(1)]);
    assert_eq!(eval("`and`.`as`", &odd), [json!(1)]);
}

#[test]
fn environment_variables() {
    let patient = patient();
    assert_eq!(eval("%ucum", &patient), [json!("http://unitsofmeasure.org")]);
    assert_eq!(eval("%loinc", &patient), [json!("http://loinc.org")]);
    assert_eq!(eval("%sct", &patient), [json!("http://snomed.info/sct")]);
    assert_eq!(
        eval("%`vs-administrative-gender`", &patient),
        [json!("http://hl7.org/fhir/ValueSet/administrative-gender")]
    );
    assert_eq!(
        eval("%'ext-patient-birthTime'", &patient),
        [json!("http://hl7.org/fhir/StructureDefinition/patient-birthTime")]
    );
    assert_eq!(eval("%resource.id", &patient), [json!("p1")]);
    assert_eq!(eval("%rootResource.id", &patient), [json!("p1")]);
    assert_eq!(eval("%context.gender", &patient), [json!("male")]);
    assert_eq!(eval("$this.gender", &patient), [json!("male")]);
}

#[test]
fn syntax_errors_are_reported_with_a_position() {
    for bad in [
        "",
        "Patient.",
        "Patient..name",
        "Patient.name[",
        "Patient.name[0",
        "where(",
        "1 +",
        "'unterminated",
        "`unterminated",
        "@20x",
        "@2020-13-01",
        "@T25:00",
        "Patient.name)",
        "(1",
        "1 2",
        "#",
        "'\\q'",
        "'\\u12'",
        "/* open",
        "$",
        "Patient.name.where(use = 'x',)",
        "{1}",
        "a.(b)",
    ] {
        match compile(bad) {
            Err(FhirPathError::Syntax { position, .. }) => assert!(position <= bad.len(), "{bad}: {position}"),
            other => panic!("{bad:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn unknown_names_do_not_compile() {
    assert!(
        matches!(compile("Patient.name.frobnicate()"), Err(FhirPathError::UnknownFunction { name, .. }) if name == "frobnicate")
    );
    assert!(matches!(compile("(1|2).aggregate($this)"), Err(FhirPathError::UnsupportedFunction { .. })));
    assert!(matches!(compile("$total"), Err(FhirPathError::UnsupportedFunction { .. })));
    assert!(matches!(compile("Patient.name.where()"), Err(FhirPathError::Arity { function: "where", actual: 0, .. })));
    assert!(matches!(compile("Patient.name.first(1)"), Err(FhirPathError::Arity { function: "first", .. })));
    assert!(matches!(compile("iif(true)"), Err(FhirPathError::Arity { function: "iif", .. })));
    assert!(
        matches!(compile("Observation.value as Quantityy"), Err(FhirPathError::UnknownType { name, .. }) if name == "Quantityy")
    );
    assert!(
        matches!(compile("Observation.value.ofType(FHIR.Foo)"), Err(FhirPathError::UnknownType { name, .. }) if name == "FHIR.Foo")
    );
    assert!(matches!(compile("Observation.value.as('Quantity')"), Err(FhirPathError::Syntax { .. })));
    assert!(matches!(compile("%nope"), Err(FhirPathError::UnknownVariable { name, .. }) if name == "nope"));
    assert!(matches!(compile("'a'.matches('(')"), Err(FhirPathError::Syntax { .. })));
}

#[test]
fn nesting_is_bounded() {
    let deep_parens = format!("{}1{}", "(".repeat(MAX_DEPTH * 4), ")".repeat(MAX_DEPTH * 4));
    assert_eq!(compile(&deep_parens).err(), Some(FhirPathError::TooDeep { limit: MAX_DEPTH }));
    let long_path = format!("Patient{}", ".name".repeat(MAX_DEPTH + 1));
    assert_eq!(compile(&long_path).err(), Some(FhirPathError::TooDeep { limit: MAX_DEPTH }));
    let negations = format!("{}1", "-".repeat(MAX_DEPTH * 4));
    assert_eq!(compile(&negations).err(), Some(FhirPathError::TooDeep { limit: MAX_DEPTH }));
    // Long unions stay flat.
    let union = vec!["1"; 1000].join(" | ");
    assert_eq!(eval(&format!("({union}).count()"), &empty()), [json!(1)]);
}

#[test]
fn the_deepest_expression_allowed_evaluates_without_overflowing_the_stack() {
    // Run on a thread with the smallest stack a test thread may have.
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let depth = MAX_DEPTH - 2;
            let expression = format!("{}1{}", "(".repeat(depth), " + 1)".repeat(depth));
            eval(&expression, &empty())
        })
        .expect("thread");
    assert_eq!(handle.join().expect("no overflow"), [json!(MAX_DEPTH as i64 - 1)]);
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let depth = MAX_DEPTH - 2;
            let expression = format!("{}true{}", "where(".repeat(depth), ")".repeat(depth));
            eval(&expression, &patient()).len()
        })
        .expect("thread");
    assert_eq!(handle.join().expect("no overflow"), 1);
}

#[test]
fn expressions_display_their_source() {
    let expression = compile("Patient.name.given").expect("compiles");
    assert_eq!(expression.to_string(), "Patient.name.given");
    assert_eq!(expression.source(), "Patient.name.given");
    let parsed: crate::fhirpath::Expression = "Patient.gender".parse().expect("parses");
    assert_eq!(eval(parsed.source(), &patient()), [json!("male")]);
}
