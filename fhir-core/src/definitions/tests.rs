use super::*;

#[test]
fn knows_the_r4_resource_types() {
    let defs = r4();
    assert_eq!(defs.fhir_version(), "4.0.1");
    assert!(defs.is_resource_type("Patient"));
    assert!(defs.is_resource_type("Bundle"));
    assert!(!defs.is_resource_type("DomainResource"), "abstract types are not resource types");
    assert!(!defs.is_resource_type("Resource"));
    assert!(!defs.is_resource_type("HumanName"));
    assert!(!defs.is_resource_type("patient"));
    let types: Vec<&str> = defs.resource_types().collect();
    assert_eq!(types.len(), 146);
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(types, sorted);
    assert!(defs.is_domain_resource("Patient"));
    assert!(!defs.is_domain_resource("Bundle"));
    assert!(!defs.is_domain_resource("Parameters"));
}

#[test]
fn element_lookup_follows_datatypes_and_choices() {
    let defs = r4();
    let gender = defs.element("Patient", "gender").expect("Patient.gender");
    assert_eq!(gender.element.path, "Patient.gender");
    assert_eq!(gender.element_type.map(|t| t.target), Some(TypeTarget::Primitive(Primitive::Code)));
    let binding = gender.element.binding.as_ref().expect("required binding");
    assert_eq!(binding.value_set, "http://hl7.org/fhir/ValueSet/administrative-gender");

    let unit = defs.element("Observation", "Observation.valueQuantity.unit").expect("valueQuantity.unit");
    assert_eq!(unit.element.path, "Quantity.unit");

    let value = defs.element("Observation", "valueQuantity").expect("valueQuantity");
    assert_eq!(value.element.path, "Observation.value[x]");
    assert!(value.element.is_choice());
    assert_eq!(value.element_type.map(|t| t.code.as_str()), Some("Quantity"));

    let bare = defs.element("Observation", "value").expect("value");
    assert_eq!(bare.element.path, "Observation.value[x]");
    assert!(bare.element_type.is_none(), "a choice named without its type has no single type");
    assert!(defs.element("Observation", "value.unit").is_none());
    assert!(defs.element("Observation", "valueFoo").is_none());

    let given = defs.element("Patient", "contact.name.given").expect("contact.name.given");
    assert_eq!(given.element.path, "HumanName.given");
    assert_eq!(given.element.max, Max::Unbounded);
}

#[test]
fn element_lookup_follows_content_references() {
    let defs = r4();
    let nested = defs.element("Questionnaire", "item.item.item.linkId").expect("nested item");
    assert_eq!(nested.element.path, "Questionnaire.item.linkId");
    assert_eq!(nested.element.min, 1);
    let link = defs.element("Bundle", "entry.link.relation").expect("Bundle.entry.link");
    assert_eq!(link.element.path, "Bundle.link.relation");
    let item = defs.element("Questionnaire", "item.item").expect("item.item");
    assert_eq!(item.element.content_reference.as_deref(), Some("Questionnaire.item"));
}

#[test]
fn quantity_profiles_are_types_of_their_own() {
    let defs = r4();
    let low = defs.element("Range", "low").expect("Range.low");
    assert_eq!(low.element.profile.as_deref(), Some("SimpleQuantity"));
    let comparator = defs.element("Range", "low.comparator").expect("comparator");
    assert_eq!(comparator.element.path, "SimpleQuantity.comparator");
    assert_eq!(comparator.element.max, Max::Bounded(0));
    assert_eq!(defs.type_def("MoneyQuantity").map(|t| t.kind), Some(TypeKind::ComplexType));
}

#[test]
fn resource_id_is_an_id_and_element_id_a_string() {
    let defs = r4();
    let id = defs.element("Patient", "id").expect("Patient.id");
    assert_eq!(id.element_type.map(|t| t.target), Some(TypeTarget::Primitive(Primitive::Id)));
    let element_id = defs.element("HumanName", "id").expect("HumanName.id");
    assert_eq!(element_id.element_type.map(|t| t.target), Some(TypeTarget::Primitive(Primitive::String)));
    let url = defs.element("Extension", "url").expect("Extension.url");
    assert_eq!(url.element_type.map(|t| t.target), Some(TypeTarget::Primitive(Primitive::Uri)));
}

#[test]
fn search_parameters_per_type_include_the_resource_ones() {
    let defs = r4();
    assert_eq!(defs.search_parameters().len(), 1400);
    assert_eq!(defs.search_parameters().iter().filter(|sp| sp.core).count(), 1375);
    let codes: Vec<&str> = defs.search_parameters_for("Patient").map(|sp| sp.code.as_str()).collect();
    for expected in ["_id", "_lastUpdated", "_profile", "_tag", "_security", "_text", "birthdate", "name", "family"] {
        assert!(codes.contains(&expected), "Patient lacks {expected}");
    }
    let bundle: Vec<&str> = defs.search_parameters_for("Bundle").map(|sp| sp.code.as_str()).collect();
    assert!(bundle.contains(&"_id"));
    assert!(!bundle.contains(&"_text"), "_text is defined on DomainResource; Bundle is not one");

    let subject = defs.search_parameter("Condition", "subject").expect("Condition.subject");
    assert_eq!(subject.url, "http://hl7.org/fhir/SearchParameter/Condition-subject");
    assert_eq!(subject.kind, SearchParamType::Reference);
    assert!(subject.target.contains(&"Patient".to_string()));

    let birthdate = defs.search_parameter("Patient", "birthdate").expect("birthdate");
    assert_eq!(birthdate.kind, SearchParamType::Date);
    assert!(birthdate.expression.as_deref().is_some_and(|e| e.contains("Patient.birthDate")));

    let composite = defs.search_parameter("Observation", "code-value-quantity").expect("composite");
    assert_eq!(composite.kind, SearchParamType::Composite);
    assert_eq!(composite.component.len(), 2);
    assert!(defs.search_parameter_by_url(&composite.component[0].definition).is_some());

    assert_eq!(defs.search_parameters_for("NotAType").count(), 0);
}

#[test]
fn required_value_sets_are_expanded() {
    let defs = r4();
    let url = "http://hl7.org/fhir/ValueSet/administrative-gender";
    assert_eq!(defs.value_set_contains_code(url, "female"), Some(true));
    assert_eq!(defs.value_set_contains_code(url, "woman"), Some(false));
    assert_eq!(defs.value_set_contains_code(&format!("{url}|4.0.1"), "male"), Some(true));
    let vs = defs.value_set(url).expect("value set");
    assert_eq!(vs.len(), 4);
    assert!(vs.contains("http://hl7.org/fhir/administrative-gender", "other"));
    assert!(!vs.contains("http://example.org", "other"));

    // Nested concepts of a hierarchical code system are part of a whole-system include.
    let clinical = "http://hl7.org/fhir/ValueSet/condition-clinical";
    assert_eq!(defs.value_set_contains_code(clinical, "recurrence"), Some(true));

    // Codes from systems outside the package are not checkable.
    assert_eq!(defs.value_set_contains_code("http://hl7.org/fhir/ValueSet/ucum-units", "mg"), None);
    assert!(defs.value_set("http://hl7.org/fhir/ValueSet/mimetypes").is_some_and(|vs| !vs.is_checkable()));
}

#[test]
fn every_required_binding_has_a_value_set_entry() {
    let defs = r4();
    for structure in &defs.structures {
        for element in &structure.elements {
            if let Some(binding) = &element.binding {
                assert!(defs.value_set(&binding.value_set).is_some(), "{} binds {}", element.path, binding.value_set);
            }
        }
    }
}

#[test]
fn rejects_a_broken_file() {
    assert!(matches!(Definitions::from_json("{}"), Err(DefinitionsError::Parse(_))));
}
