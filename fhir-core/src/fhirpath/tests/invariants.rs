//! Invariants of StructureDefinitions: [`Invariant`], the environment variables they use, and
//! the corrected R4 expressions.

use serde_json::json;

use super::super::{corrected_r4_expression, Invariant, Item};
use super::*;

fn holds(path: &str, expression: &str, resource: &Value) -> bool {
    let invariant = Invariant::compile(path, expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    invariant.holds(resource).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

#[test]
fn an_invariant_holds_on_every_element_at_its_path() {
    let observation = observation();
    assert!(holds("Observation", "dataAbsentReason.empty() or value.empty()", &observation));
    assert!(holds("Observation.component", "code.exists()", &observation));
    assert!(
        !holds("Observation.component", "(value as string).hasValue() or value is Quantity", &observation),
        "the third has only extensions"
    );
    // A choice path is the element of whatever type.
    assert!(holds("Observation.value[x]", "$this is Quantity", &observation));
    assert!(holds("Observation.component.value[x]", "$this.exists()", &observation));
    // Nothing at the path: nothing to violate.
    assert!(holds("Observation.referenceRange", "false", &observation));
    // False and empty results are violations; a single non-boolean item counts as true.
    assert!(!holds("Observation", "{}", &observation));
    assert!(holds("Observation", "status", &observation));
    let several = Invariant::compile("Observation", "component.code").expect("compiles");
    assert!(matches!(several.holds(&observation), Err(FhirPathError::NotSingleton { .. })));
    // An element named like a keyword stays a name.
    let value_set = json!({"resourceType": "ValueSet", "expansion": {"contains": [{"code": "a"}, {"code": "b"}]}});
    assert!(holds("ValueSet.expansion.contains", "code.exists()", &value_set));
    assert!(!holds("ValueSet.expansion.contains", "code = 'a'", &value_set));
}

#[test]
fn violations_are_the_failing_elements() {
    let observation = observation();
    let invariant = Invariant::compile("Observation.component", "(value as string).hasValue() or value is Quantity")
        .expect("compiles");
    let violations =
        invariant.violations(&observation, &observation, &Item::resource(&observation)).expect("evaluates");
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].to_json()["code"]["text"], json!("absent"));
}

#[test]
fn context_is_the_element_and_resource_the_resource() {
    // ig-1: `%context` is the element the invariant is on.
    let guide = json!({"resourceType": "ImplementationGuide", "definition": {
        "grouping": [{"id": "g1"}], "resource": [{"groupingId": "g1"}]}});
    let ig_1 = "resource.groupingId.all(%context.grouping.id contains $this)";
    assert!(holds("ImplementationGuide.definition", ig_1, &guide));
    let mut wrong = guide.clone();
    wrong["definition"]["resource"][0]["groupingId"] = json!("g2");
    assert!(!holds("ImplementationGuide.definition", ig_1, &wrong));
    let observation = observation();
    assert!(holds("Observation.component", "%resource.id = 'o1' and %rootResource.id = 'o1'", &observation));
    assert!(holds("Observation.value[x]", "system = %ucum", &observation));
}

#[test]
fn the_all_form_works_on_navigated_elements() {
    let observation = observation();
    assert_all_true(
        &observation,
        &[
            "Observation.component.all(code.exists() and %resource.id = 'o1')",
            "Observation.value.all($this is Quantity and system = %ucum)",
            "Observation.all(value.exists() implies dataAbsentReason.empty())",
            "Observation.component.all(value.hasValue()) = false",
        ],
    );
}

#[test]
fn contained_resources_see_their_container_as_root_resource() {
    let container = json!({"resourceType": "MedicationRequest", "id": "mr",
        "contained": [
            {"resourceType": "Medication", "id": "med", "ingredient": [{"itemReference": {"reference": "#sub"}}]},
            {"resourceType": "Substance", "id": "sub", "code": {"text": "x"}}
        ],
        "medicationReference": {"reference": "#med"}});
    let medication = &container["contained"][0];
    let expression = compile(
        "%resource.id & '/' & %rootResource.id & '/' & ingredient.item.resolve().id & '/' & ingredient.item.resolve().code.text",
    )
    .expect("compiles");
    let found = expression.evaluate_in(&container, medication, &Item::resource(medication)).expect("evaluates");
    assert_eq!(found.iter().map(Item::to_json).collect::<Vec<_>>(), [json!("med/mr/sub/x")]);
    // ref-1 (corrected) on the reference inside the contained resource.
    let ref_1 = Invariant::compile("Reference", corrected_r4_expression("ref-1", R4_REF_1)).expect("compiles");
    let references = compile("ingredient.item").expect("compiles");
    let reference = &references.evaluate_in(&container, medication, &Item::resource(medication)).expect("evaluates")[0];
    assert!(ref_1.violations(&container, medication, reference).expect("evaluates").is_empty());
    let broken = json!({"resourceType": "Observation", "subject": {"reference": "#nope"}});
    let subject = &compile("Observation.subject").expect("compiles").evaluate(&broken).expect("evaluates")[0];
    assert_eq!(ref_1.violations(&broken, &broken, subject).expect("evaluates").len(), 1);
}

const R4_REF_1: &str =
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";

#[test]
fn r4_invariants_that_fail_valid_content_are_corrected() {
    let display_only = json!({"resourceType": "Observation", "subject": {"display": "someone"}});
    let subject = &compile("Observation.subject").expect("compiles").evaluate(&display_only).expect("evaluates")[0];
    let original = Invariant::compile("Reference", R4_REF_1).expect("compiles");
    assert_eq!(original.violations(&display_only, &display_only, subject).expect("evaluates").len(), 1);
    let corrected = Invariant::compile("Reference", corrected_r4_expression("ref-1", R4_REF_1)).expect("compiles");
    assert!(corrected.violations(&display_only, &display_only, subject).expect("evaluates").is_empty());

    let bundle = json!({"resourceType": "Bundle", "type": "transaction-response",
        "entry": [{"response": {"status": "200"}}, {"fullUrl": "http://x/Patient/1/_history/2"}]});
    let bdl_8 = "fullUrl.contains('/_history/').not()";
    let corrected = Invariant::compile("Bundle.entry", corrected_r4_expression("bdl-8", bdl_8)).expect("compiles");
    let entries = Item::resource(&bundle);
    assert_eq!(corrected.violations(&bundle, &bundle, &entries).expect("evaluates").len(), 1, "only the versioned one");
    assert!(!holds(
        "Bundle.entry",
        bdl_8,
        &json!({"resourceType": "Bundle", "entry": [{"response": {"status": "200"}}]})
    ));

    let risk = json!({"resourceType": "RiskAssessment", "prediction": [{"outcome": {"text": "x"}}, {"probabilityDecimal": 0.2}]});
    let ras_2 = "probability is decimal implies (probability as decimal) <= 100";
    assert!(!holds("RiskAssessment.prediction", ras_2, &risk), "`{{}} is decimal` is empty in N1");
    assert!(holds("RiskAssessment.prediction", corrected_r4_expression("ras-2", ras_2), &risk));
    let too_likely = json!({"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 101}]});
    assert!(!holds("RiskAssessment.prediction", corrected_r4_expression("ras-2", ras_2), &too_likely));

    // Anything else is left alone.
    assert_eq!(corrected_r4_expression("ref-1", "other"), "other");
    assert_eq!(
        corrected_r4_expression("obs-6", "dataAbsentReason.empty() or value.empty()"),
        "dataAbsentReason.empty() or value.empty()"
    );
}
