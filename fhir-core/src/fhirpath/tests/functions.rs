//! The function library.

use serde_json::{json, Value};

use super::*;

const NONE: [Value; 0] = [];

#[test]
fn where_and_select_with_this_and_index() {
    let patient = patient();
    assert_eq!(eval("Patient.telecom.where(system = 'phone').value", &patient), [json!("(03) 5555 6473")]);
    assert_eq!(eval("Patient.name.given.where($this = 'Jim')", &patient), [json!("Jim")]);
    assert_eq!(eval("Patient.name.given.where($index > 0)", &patient), [json!("James"), json!("Jim")]);
    assert_eq!(eval("Patient.name.where(use = 'nope')", &patient), NONE);
    assert_eq!(eval("Patient.name.where(family)", &patient).len(), 2, "a non-boolean single item is true");
    assert_eq!(eval("Patient.name.select(given.first())", &patient), [json!("Peter"), json!("Jim")]);
    assert_eq!(eval("Patient.name.select($index)", &patient), [json!(0), json!(1), json!(2)]);
    assert!(matches!(
        error("Patient.name.where(given)", &patient),
        FhirPathError::NotSingleton { operation: "where", .. }
    ));
}

#[test]
fn existence() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "Patient.name.exists()",
            "Patient.foo.exists().not()",
            "Patient.name.exists(use = 'usual')",
            "Patient.name.exists(use = 'temp').not()",
            "Patient.foo.empty()",
            "Patient.name.empty() = false",
            "Patient.name.given.count() = 3",
            "Patient.foo.count() = 0",
            "Patient.name.all(use.exists())",
            "Patient.name.all(family.exists()) = false",
            "Patient.foo.all(false)",
            "(true | false).anyTrue()",
            "(true | true).allTrue()",
            "(true | false).allTrue() = false",
            "(false).allFalse()",
            "(true | false).anyFalse()",
            "(1 | 2 | 3).isDistinct()",
            "Patient.name.given.combine('Jim').isDistinct() = false",
            "Patient.gender.hasValue()",
            "Patient.name.hasValue() = false",
            "false.not()",
            "(Patient.active.not()) = false",
        ],
    );
    assert_eq!(truth("{}.not()", &patient), None);
    assert_eq!(truth("'x'.not()", &patient), Some(false), "a single non-boolean item is true");
    assert!(matches!(error("(true | false).not()", &patient), FhirPathError::NotSingleton { operation: "not", .. }));
}

#[test]
fn subsetting() {
    let patient = patient();
    assert_eq!(eval("Patient.name.given.first()", &patient), [json!("Peter")]);
    assert_eq!(eval("Patient.name.given.last()", &patient), [json!("Jim")]);
    assert_eq!(eval("Patient.name.given.tail()", &patient), [json!("James"), json!("Jim")]);
    assert_eq!(eval("Patient.name.given.skip(2)", &patient), [json!("Jim")]);
    assert_eq!(eval("Patient.name.given.skip(-1).count()", &patient), [json!(3)]);
    assert_eq!(eval("Patient.name.given.take(2)", &patient), [json!("Peter"), json!("James")]);
    assert_eq!(eval("Patient.name.given.take(0)", &patient), NONE);
    assert_eq!(eval("Patient.gender.single()", &patient), [json!("male")]);
    assert_eq!(eval("Patient.foo.single()", &patient), NONE);
    assert_eq!(eval("Patient.foo.first()", &patient), NONE);
    assert_eq!(eval("(1 | 2 | 1).distinct()", &patient), [json!(1), json!(2)]);
    assert!(matches!(
        error("Patient.name.single()", &patient),
        FhirPathError::NotSingleton { operation: "single", count: 3 }
    ));
    assert!(matches!(error("Patient.name.skip('a')", &patient), FhirPathError::InvalidOperand { .. }));
}

#[test]
fn iif_evaluates_only_the_chosen_branch() {
    let patient = patient();
    assert_eq!(eval("iif(Patient.active, 'yes', 'no')", &patient), [json!("yes")]);
    assert_eq!(eval("iif(Patient.foo, 'yes', 'no')", &patient), [json!("no")]);
    assert_eq!(eval("iif(false, 'yes')", &patient), NONE);
    assert_eq!(eval("iif(true, 1, (1 | 2).single())", &patient), [json!(1)]);
    assert_eq!(eval("Patient.name.first().iif(use = 'official', family, 'x')", &patient), [json!("Chalmers")]);
    assert!(matches!(
        error("Patient.name.iif(true, 1)", &patient),
        FhirPathError::NotSingleton { operation: "iif", .. }
    ));
}

#[test]
fn string_functions() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "Patient.name.family.first().contains('alm')",
            "Patient.name.family.first().contains('xyz') = false",
            "Patient.name.family.first().startsWith('Cha')",
            "Patient.name.family.first().endsWith('ers')",
            "Patient.gender.startsWith('ma')",
            "Patient.birthDate.startsWith('1974')",
            "'abc'.contains('')",
            "'abc'.matches('^a.c$')",
            "('abc'.matches('^b')) = false",
            "'abc'.matches('B'.lower())",
            "'a-b-c'.replaceMatches('-', '+') = 'a+b+c'",
            "'abc'.replace('b', 'X') = 'aXc'",
            "'abcdef'.substring(2) = 'cdef'",
            "'abcdef'.substring(2, 2) = 'cd'",
            "'abc'.indexOf('c') = 2",
            "'abc'.indexOf('x') = -1",
            "'ébc'.indexOf('c') = 2",
            "'ABC'.lower() = 'abc'",
            "'abc'.upper() = 'ABC'",
            "'abcé'.length() = 4",
            "1.toString() = '1'",
            "true.toString() = 'true'",
            "'42'.toInteger() = 42",
            "'4.5'.toDecimal() = 4.5",
            "Patient.contact.gender.toString() = 'female'",
        ],
    );
    assert_eq!(eval("'abc'.substring(5)", &patient), NONE);
    assert_eq!(eval("'abc'.contains({})", &patient), NONE);
    assert_eq!(eval("Patient.foo.contains('a')", &patient), NONE);
    assert_eq!(eval("'x'.toInteger()", &patient), NONE);
    assert_eq!(eval("Patient.name[1].toString()", &patient), NONE, "complex values have no string form");
    assert!(matches!(
        error("Patient.name.given.contains('J')", &patient),
        FhirPathError::NotSingleton { operation: "contains", .. }
    ));
    assert!(matches!(error("1.contains('1')", &patient), FhirPathError::InvalidOperand { operation: "contains", .. }));
    assert!(matches!(
        error("'a'.matches('(' + '')", &patient),
        FhirPathError::InvalidOperand { operation: "matches", .. }
    ));
}

#[test]
fn extension_by_url() {
    let patient = patient();
    assert_eq!(eval("Patient.extension('http://example.org/eye-colour').value", &patient), [json!("blue")]);
    assert_eq!(types_of("Patient.extension('http://example.org/eye-colour').value", &patient), [Some("code")]);
    assert_eq!(eval("Patient.extension('http://example.org/none')", &patient), NONE);
    assert_eq!(eval("Patient.extension.where(url = 'http://example.org/nickname-count').value", &patient), [json!(2)]);
    assert_eq!(types_of("Patient.extension('http://example.org/eye-colour')", &patient), [Some("Extension")]);
    // Extensions of primitives live in the `_name` sibling.
    assert_eq!(
        eval(
            "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value",
            &patient
        ),
        [json!("1974-12-25T14:35:45-05:00")]
    );
    assert_eq!(
        eval("Patient.name.given.where(extension('http://example.org/given-kind').exists())", &patient),
        [json!("James")]
    );
    assert_all_true(
        &patient,
        &[
            "Patient.hasExtension('http://example.org/eye-colour')",
            "Patient.hasExtension('http://example.org/none') = false",
            "Patient.birthDate.hasExtension('http://hl7.org/fhir/StructureDefinition/patient-birthTime')",
            "Patient.name.where(given.hasExtension('http://example.org/given-kind')).use = 'official'",
            "Patient.name[2].family.id = 'f1'",
        ],
    );
    assert!(matches!(error("Patient.extension(1)", &patient), FhirPathError::InvalidOperand { .. }));
}

#[test]
fn resolve_types_references_by_their_target() {
    let patient = patient();
    let practitioner_or_org = |expression: &str| truth(expression, &patient);
    // `#doc`: the contained resource itself, navigable.
    assert_eq!(eval("Patient.generalPractitioner[0].resolve().name.family", &patient), [json!("Careful")]);
    assert_eq!(practitioner_or_org("Patient.generalPractitioner[0].resolve() is Practitioner"), Some(true));
    assert_eq!(practitioner_or_org("Patient.generalPractitioner[1].resolve() is Practitioner"), Some(true));
    assert_eq!(practitioner_or_org("Patient.generalPractitioner[2].resolve() is Organization"), Some(true));
    assert_eq!(practitioner_or_org("Patient.generalPractitioner[3].resolve() is Practitioner"), Some(false));
    assert_eq!(
        practitioner_or_org("Patient.generalPractitioner[4].resolve() is Organization"),
        Some(true),
        "Reference.type"
    );
    assert_eq!(practitioner_or_org("Patient.managingOrganization.resolve() is Organization"), Some(true));
    assert_eq!(
        eval("Patient.generalPractitioner.where(resolve() is Practitioner).reference", &patient),
        [json!("#doc"), json!("Practitioner/123/_history/2")]
    );
    assert_eq!(
        eval("Patient.generalPractitioner.where(resolve() is Organization).reference", &patient),
        [json!("http://example.org/fhir/Organization/9")]
    );
    assert_eq!(eval("Patient.generalPractitioner[1].resolve().name", &patient), NONE, "not fetched");
    assert_eq!(types_of("Patient.generalPractitioner.resolve()", &patient).len(), 5);

    let observation = observation();
    assert_eq!(
        eval("Observation.subject.where(resolve() is Patient).reference", &observation),
        [json!("Patient/example")]
    );
    let plan = json!({"resourceType": "PlanDefinition", "relatedArtifact": [
        {"type": "depends-on", "resource": "http://hl7.org/fhir/ValueSet/example|1.0"},
        {"type": "depends-on", "resource": "urn:oid:1.2.3"}]});
    assert_eq!(truth("PlanDefinition.relatedArtifact[0].resource.resolve() is ValueSet", &plan), Some(true));
    assert_eq!(truth("PlanDefinition.relatedArtifact[1].resource.resolve() is ValueSet", &plan), Some(false));
}

#[test]
fn member_of_checks_known_value_sets() {
    let patient = patient();
    let gender = "http://hl7.org/fhir/ValueSet/administrative-gender";
    assert_eq!(truth(&format!("Patient.gender.memberOf('{gender}')"), &patient), Some(true));
    assert_eq!(truth(&format!("'martian'.memberOf('{gender}')"), &patient), Some(false));
    assert_eq!(truth("Patient.gender.memberOf('http://example.org/unknown')", &patient), None);
    let coding = json!({"resourceType": "Basic", "code": {"coding": [
        {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]}});
    assert_eq!(truth(&format!("Basic.code.memberOf('{gender}')"), &coding), Some(true));
    assert_eq!(truth(&format!("Basic.code.coding.memberOf('{gender}')"), &coding), Some(true));
}

#[test]
fn tree_functions() {
    let patient = patient();
    assert_eq!(eval("Patient.name[1].children()", &patient), [json!("usual"), json!("Jim")]);
    assert_eq!(types_of("Patient.name[1].children()", &patient), [Some("code"), Some("string")]);
    assert_eq!(eval("Patient.descendants().where($this = 'Careful')", &patient), [json!("Careful")]);
    assert_eq!(eval("Patient.contact.descendants().ofType(HumanName).family", &patient), [json!("du Marché")]);
    assert_eq!(eval("Patient.name.given.repeat($this).count()", &patient), [json!(3)]);
    assert_eq!(eval("(1 | 2).repeat(3)", &patient), [json!(3)]);
    assert!(matches!(error("'a'.repeat($this & 'a')", &patient), FhirPathError::TooManyItems { .. }));
    assert_eq!(
        eval("Patient.birthDate.children().url", &patient),
        [json!("http://hl7.org/fhir/StructureDefinition/patient-birthTime")]
    );
}

#[test]
fn utilities() {
    let patient = patient();
    assert_eq!(eval("Patient.gender.trace('gender')", &patient), [json!("male")]);
    assert_eq!(types_of("today()", &patient), [Some("Date")]);
    assert_eq!(types_of("now()", &patient), [Some("DateTime")]);
    assert_all_true(
        &patient,
        &["today() > @2020", "now() > @2020-01-01T00:00:00Z", "today().toString().length() = 10"],
    );
}
