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

#[test]
fn set_functions() {
    let observation = observation();
    assert_all_true(
        &observation,
        &[
            "(1 | 2 | 3).intersect(2 | 3 | 4) = (2 | 3)",
            "(1 | 2).intersect({}).empty()",
            "(1).combine(1).combine(2).intersect(1 | 2).count() = 2",
            "(1).combine(2).combine(1).combine(3).exclude(1) = (2 | 3)",
            "(1).combine(2).combine(2).exclude(1).count() = 2",
            "(1 | 2).exclude({}).count() = 2",
            "(1 | 2).subsetOf(1 | 2 | 3)",
            "(1 | 4).subsetOf(1 | 2 | 3) = false",
            "{}.subsetOf(1)",
            "(1).subsetOf({}) = false",
            "(1 | 2 | 3).supersetOf(3 | 1)",
            "(1 | 2).supersetOf(3) = false",
            "(1).supersetOf({})",
            // Complex values compare by content: obs-7's `coding.intersect(%resource.code.coding)`.
            "Observation.code.coding.intersect(%resource.code.coding).count() = 1",
            "Observation.component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
        ],
    );
}

#[test]
fn matches_full_anchors_and_both_are_single_line() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "'abc'.matches('b')",
            "'abc'.matchesFull('b') = false",
            "'abc'.matchesFull('a.c')",
            "'abc'.matchesFull('a|abc')",
            "'abcd'.matchesFull('a.c') = false",
            "'abc'.matchesFull('b' + '') = false",
            "'abc'.matchesFull('[a-c]' + '+')",
            "Patient.gender.matchesFull('male|female')",
            // "Single line" mode: `.` also matches a line break.
            "'a\\nc'.matches('a.c')",
            "'a\\nc'.matchesFull('a.c')",
        ],
    );
    assert_eq!(eval("Patient.foo.matchesFull('a')", &patient), NONE);
    assert!(matches!(error("'a'.matchesFull('(')", &patient), FhirPathError::Syntax { .. }));
}

#[test]
fn trace_passes_its_input_without_evaluating_its_arguments() {
    let patient = patient();
    assert_eq!(eval("Patient.name.given.trace('given')", &patient).len(), 3);
    // The projection would fail (several items to `single()`) if it were evaluated.
    assert_eq!(eval("Patient.gender.trace('g', Patient.name.given.single())", &patient), [json!("male")]);
}

#[test]
fn html_checks_the_narrative_rules() {
    let patient = patient();
    assert_eq!(truth("Patient.text.div.htmlChecks()", &patient), Some(true));
    let narrative = |div: &str| json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
    let valid = [
        r#"<div xmlns="http://www.w3.org/1999/xhtml">x</div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>A <b>bold</b> &amp; <a href="http://x">link</a></p></div>"#,
        r#"<div xmlns='http://www.w3.org/1999/xhtml'><img src="x.png" alt="x"/></div>"#,
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <table><tr><td style=\"color: red\">&#160;1</td></tr></table><!-- c --><br/>\n</div>\n",
    ];
    for div in valid {
        assert_eq!(truth("text.div.htmlChecks()", &narrative(div)), Some(true), "{div}");
    }
    let invalid = [
        // Not well-formed.
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>x</div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>x</b></p></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml">a & b</div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p class=x>x</p></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml">x</div><p>y</p>"#,
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">x",
        // Not an XHTML div.
        "<div>x</div>",
        r#"<p xmlns="http://www.w3.org/1999/xhtml">x</p>"#,
        "plain text",
        // Elements and attributes that are not allowed.
        r#"<div xmlns="http://www.w3.org/1999/xhtml">x<script>alert(1)</script></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><form>x</form></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="f()">x</p></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href=" JavaScript:f()">x</a></div>"#,
        // No content (txt-2).
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n    </div>",
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><pre> </pre></div>"#,
    ];
    for div in invalid {
        assert_eq!(truth("text.div.htmlChecks()", &narrative(div)), Some(false), "{div}");
    }
    // Empty for anything but one xhtml value.
    assert_eq!(truth("Patient.foo.htmlChecks()", &patient), None);
    assert_eq!(truth("Patient.name.htmlChecks()", &patient), None);
    assert_eq!(truth("1.htmlChecks()", &patient), None);
}
