//! The search parameters in use: the R4 ones compiled into the crate, and over them a set of
//! custom ones (from Implementation Guide packages, or SearchParameter resources written through
//! the API) installed at run time.
//!
//! The custom set is process-wide: one per server process, shared by every tenant, every request
//! and every projector in it, and replaced as a whole by [`install`]. Every search parameter
//! lookup outside `definitions` goes through the functions here, so that the query parser, the
//! extraction, the index mappings and the CapabilityStatement agree on one set.
//!
//! A core parameter always wins: a custom one whose code a core parameter of the same resource
//! type already uses is not used on that type. Each set is immutable once installed; readers
//! take the current one (one `Arc` clone) and keep it for as long as they need.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use super::extract::{compile_parameter, CompiledByType};
use crate::definitions::{r4, SearchParamType, SearchParameter};

/// What [`install`] made of a set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Urls of the parameters now in use, on at least one of their base types.
    pub active: Vec<String>,
    /// Parameters not used on some or all of their base types, by url, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// One installed custom set, never changed once published.
#[derive(Default)]
pub(super) struct Custom {
    generation: u64,
    /// Every parameter of the set, including those skipped on all their types (their urls
    /// still resolve, for composite components).
    installed: Vec<&'static SearchParameter>,
    /// Those used on at least one type.
    active: Vec<&'static SearchParameter>,
    /// Those with base `Resource` used on every type: they apply to a search across all types.
    resource_level: Vec<&'static SearchParameter>,
    /// The active ones per concrete resource type, sorted by code.
    by_type: HashMap<String, Vec<&'static SearchParameter>>,
    /// The active ones compiled for extraction, per resource type.
    compiled: CompiledByType,
}

impl Custom {
    pub(super) fn compiled(&self) -> &CompiledByType {
        &self.compiled
    }

    fn of_type(&self, resource_type: &str) -> &[&'static SearchParameter] {
        self.by_type.get(resource_type).map_or(&[], Vec::as_slice)
    }
}

static ACTIVE: LazyLock<RwLock<Arc<Custom>>> = LazyLock::new(Default::default);

/// The custom set installed now.
pub(super) fn snapshot() -> Arc<Custom> {
    ACTIVE.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Replaces the whole custom set with `parameters`, all or nothing: on an error the set in use
/// stays as it was, and every problem found is reported. Errors: a parameter that fails
/// [`SearchParameter::check_custom`], a url given twice, two parameters with the same code on one
/// resource type, a composite component that is neither a core parameter nor one of the set.
/// A parameter whose url is a core one, or whose code a core parameter of one of its types
/// uses, is skipped (on those types) and reported in [`Installed::skipped`].
pub fn install(parameters: Vec<SearchParameter>) -> Result<Installed, Vec<String>> {
    let definitions = r4();
    let mut errors: Vec<String> = parameters.iter().filter_map(|parameter| parameter.check_custom().err()).collect();
    let mut urls = HashSet::new();
    for parameter in &parameters {
        if !urls.insert(parameter.url.as_str()) {
            errors.push(format!("SearchParameter {} is given twice", parameter.url));
        }
    }
    for parameter in &parameters {
        for component in &parameter.component {
            if find_by_url(&component.definition, parameters.iter()).is_none_or(|p| matches!(p.kind, SearchParamType::Composite | SearchParamType::Special)) {
                errors.push(format!(
                    "SearchParameter {}: component {} is not a known non-composite SearchParameter",
                    parameter.url, component.definition
                ));
            }
        }
    }

    // Which types each parameter is used on, by index into `parameters`.
    let mut skipped = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut types_used = vec![0usize; parameters.len()];
    for (index, parameter) in parameters.iter().enumerate() {
        if definitions.search_parameter_by_url(&parameter.url).is_some_and(|core| core.core) {
            skipped.push((parameter.url.clone(), "a core SearchParameter has this url".to_string()));
            continue;
        }
        let mut clashes = Vec::new();
        let types = definitions.resource_types().filter(|t| parameter.applies_to(t, definitions.is_domain_resource(t)));
        for resource_type in types {
            if definitions.search_parameter(resource_type, &parameter.code).is_some() {
                clashes.push(resource_type);
            } else {
                by_type.entry(resource_type).or_default().push(index);
                types_used[index] += 1;
            }
        }
        if !clashes.is_empty() {
            skipped.push((parameter.url.clone(), format!("code {} is a core search parameter of {}", parameter.code, listed(&clashes))));
        }
    }
    let mut duplicates: BTreeMap<(usize, usize), Vec<&str>> = BTreeMap::new();
    for (resource_type, indexes) in &mut by_type {
        indexes.sort_by(|a, b| parameters[*a].code.cmp(&parameters[*b].code));
        for pair in indexes.windows(2).filter(|pair| parameters[pair[0]].code == parameters[pair[1]].code) {
            duplicates.entry((pair[0].min(pair[1]), pair[0].max(pair[1]))).or_default().push(resource_type);
        }
    }
    for ((first, second), types) in duplicates {
        let (first, second) = (&parameters[first], &parameters[second]);
        errors.push(format!("SearchParameters {} and {} both define code {} on {}", first.url, second.url, first.code, listed(&types)));
    }

    let component_kind = |url: &str| find_by_url(url, parameters.iter()).map(|parameter| parameter.kind);
    let mut compiled = CompiledByType::new();
    let mut not_compiled = BTreeSet::new();
    for (resource_type, indexes) in &by_type {
        for index in indexes {
            match compile_parameter(resource_type, &parameters[*index], &component_kind, true) {
                Some(one) => compiled.entry(resource_type.to_string()).or_default().push(one),
                None => {
                    not_compiled.insert(&parameters[*index].url);
                }
            }
        }
    }
    errors.extend(not_compiled.into_iter().map(|url| format!("SearchParameter {url} cannot be compiled")));
    if !errors.is_empty() {
        return Err(errors);
    }

    let installed = to_static(parameters, &snapshot());
    let active: Vec<&'static SearchParameter> = installed.iter().zip(&types_used).filter(|(_, used)| **used > 0).map(|(p, _)| *p).collect();
    let all_types = definitions.resource_types().count();
    let mut custom = Custom {
        generation: 0,
        resource_level: installed
            .iter()
            .zip(&types_used)
            .filter(|(p, used)| **used == all_types && p.base.iter().any(|base| base == "Resource"))
            .map(|(p, _)| *p)
            .collect(),
        by_type: by_type.into_iter().map(|(t, indexes)| (t.to_string(), indexes.into_iter().map(|i| installed[i]).collect())).collect(),
        compiled,
        installed,
        active,
    };
    let result = Installed { active: custom.active.iter().map(|p| p.url.clone()).collect(), skipped };
    let mut current = ACTIVE.write().unwrap_or_else(PoisonError::into_inner);
    custom.generation = current.generation + 1;
    *current = Arc::new(custom);
    Ok(result)
}

/// The parameters of a set with a `'static` lifetime, so that lookups can hand out plain
/// references that outlive any one set. They are leaked: installs are rare (at startup, and when
/// a SearchParameter is written), and a parameter equal to one of the set in use is reused
/// rather than leaked again, so reinstalling the same set costs nothing.
fn to_static(parameters: Vec<SearchParameter>, current: &Custom) -> Vec<&'static SearchParameter> {
    parameters
        .into_iter()
        .map(|parameter| match current.installed.iter().find(|old| ***old == parameter) {
            Some(old) => *old,
            None => &*Box::leak(Box::new(parameter)),
        })
        .collect()
}

/// A parameter by url: a core one, else one of `custom`, else one of the R4 package's others
/// (examples and extension-based definitions, which an Implementation Guide may define anew).
fn find_by_url<'a>(url: &str, mut custom: impl Iterator<Item = &'a SearchParameter>) -> Option<&'a SearchParameter> {
    let package = r4().search_parameter_by_url(url);
    package.filter(|parameter| parameter.core).or_else(|| custom.find(|parameter| parameter.url == url)).or(package)
}

/// Resource types as messages name them: a few, or how many.
fn listed(types: &[&str]) -> String {
    const NAMED: usize = 3;
    match types.len() {
        count if count <= NAMED => types.join(", "),
        count => format!("{} and {} more types", types[..NAMED].join(", "), count - NAMED),
    }
}

/// The parameter `code` of `resource_type`: the core one, else a custom one.
pub fn search_parameter(resource_type: &str, code: &str) -> Option<&'static SearchParameter> {
    r4().search_parameter(resource_type, code)
        .or_else(|| snapshot().of_type(resource_type).iter().find(|parameter| parameter.code == code).copied())
}

/// The parameters of `resource_type`, core and custom (including those of `Resource` and
/// `DomainResource`), sorted by code. Empty for an unknown type.
pub fn search_parameters_for(resource_type: &str) -> Vec<&'static SearchParameter> {
    let mut all: Vec<&'static SearchParameter> = r4().search_parameters_for(resource_type).collect();
    all.extend(snapshot().of_type(resource_type));
    all.sort_by(|a, b| a.code.cmp(&b.code));
    all
}

/// A parameter by canonical url (what composite components refer to): a core one, else one of
/// the custom set (used or not), else another of the R4 package.
pub fn search_parameter_by_url(url: &str) -> Option<&'static SearchParameter> {
    find_by_url(url, snapshot().installed.iter().copied())
}

/// The parameters of a search across all resource types: the core ones with base `Resource`
/// (in the package's order), then the custom ones with base `Resource` that no core parameter
/// displaces on any type.
pub fn resource_level_parameters() -> Vec<&'static SearchParameter> {
    static CORE: LazyLock<Vec<&'static SearchParameter>> = LazyLock::new(|| {
        r4().search_parameters().iter().filter(|p| p.core && p.base.iter().any(|base| base == "Resource")).collect()
    });
    let mut all = CORE.clone();
    all.extend(&snapshot().resource_level);
    all
}

/// The parameter `code` of a search across all resource types (see
/// [`resource_level_parameters`]).
pub fn resource_level(code: &str) -> Option<&'static SearchParameter> {
    resource_level_parameters().into_iter().find(|parameter| parameter.code == code)
}

/// The custom parameters in use (on at least one type), in the order they were installed.
pub fn custom_parameters() -> Vec<&'static SearchParameter> {
    snapshot().active.clone()
}

/// Counts installs: whatever was derived from the parameters (a CapabilityStatement, index
/// mappings) is stale when this has changed. 0 before the first.
pub fn generation() -> u64 {
    snapshot().generation
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use serde_json::{json, Value};

    use super::*;
    use crate::search::extract::extract;
    use crate::search::matcher::{query_criteria, Candidate};
    use crate::search::query::{parse_search, ParamPath};
    use crate::search::{IndexValue, SearchValue};

    /// The registry is process-wide: tests that install hold this, and leave the empty set.
    static LOCK: Mutex<()> = Mutex::new(());

    struct Exclusive(#[allow(dead_code)] MutexGuard<'static, ()>);

    fn exclusive() -> Exclusive {
        Exclusive(LOCK.lock().unwrap_or_else(PoisonError::into_inner))
    }

    impl Drop for Exclusive {
        fn drop(&mut self) {
            install(Vec::new()).expect("the empty set installs");
        }
    }

    const EYE_COLOUR: &str = "http://example.org/fhir/SearchParameter/eye-colour";

    fn definition(code: &str, base: &[&str], kind: &str, expression: &str) -> Value {
        json!({
            "resourceType": "SearchParameter",
            "url": format!("http://example.org/fhir/SearchParameter/{code}"),
            "name": code,
            "status": "active",
            "code": code,
            "base": base,
            "type": kind,
            "expression": expression,
        })
    }

    fn parameter(resource: Value) -> SearchParameter {
        SearchParameter::from_resource(&resource).expect("a valid SearchParameter")
    }

    fn eye_colour() -> SearchParameter {
        let expression = "Patient.extension.where(url='http://example.org/fhir/StructureDefinition/eye-colour').value";
        parameter(definition("eye-colour", &["Patient"], "token", expression))
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "extension": [
                {"url": "http://example.org/fhir/StructureDefinition/eye-colour", "valueCode": "blue"},
                {"url": "http://example.org/fhir/StructureDefinition/family-doctor", "valueReference": {"reference": "Practitioner/d1"}},
                {"url": "http://example.org/fhir/StructureDefinition/tattoo", "extension": [
                    {"url": "place", "valueCode": "arm"},
                    {"url": "date", "valueDate": "2021-06-01"}
                ]}
            ]
        })
    }

    fn parse(resource_type: &str, query: &str) -> Result<crate::search::SearchQuery, Vec<crate::Issue>> {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        parse_search(vec![resource_type.to_string()], &params, true)
    }

    #[test]
    fn a_custom_token_is_extracted_searched_and_matched_until_removed() {
        let _exclusive = exclusive();
        let before = generation();
        let installed = install(vec![eye_colour()]).expect("installs");
        assert_eq!(installed, Installed { active: vec![EYE_COLOUR.to_string()], skipped: Vec::new() });
        assert_eq!(generation(), before + 1);
        assert_eq!(custom_parameters().iter().map(|p| p.url.as_str()).collect::<Vec<_>>(), [EYE_COLOUR]);
        assert_eq!(search_parameter("Patient", "eye-colour").map(|p| p.url.as_str()), Some(EYE_COLOUR));
        assert!(search_parameter("Observation", "eye-colour").is_none(), "only on its base");
        assert_eq!(search_parameter_by_url(EYE_COLOUR).map(|p| p.code.as_str()), Some("eye-colour"));
        let codes: Vec<&str> = search_parameters_for("Patient").iter().map(|p| p.code.as_str()).collect();
        assert!(codes.contains(&"eye-colour") && codes.contains(&"name"));
        assert!(codes.windows(2).all(|pair| pair[0] <= pair[1]), "sorted by code");

        let values: Vec<IndexValue> = extract(&patient()).into_iter().filter(|e| e.param == "eye-colour").map(|e| e.value).collect();
        assert_eq!(values, [IndexValue::Token { system: None, code: "blue".into() }]);
        let query = parse("Patient", "eye-colour=blue").expect("a known parameter");
        assert!(matches!(&query.criteria[0].values[0], SearchValue::Token { code: Some(code), .. } if code == "blue"));
        let resource = patient();
        let candidate = Candidate::new(&resource);
        assert_eq!(candidate.matches(&query_criteria("Patient", "eye-colour=blue").unwrap()), Ok(true));
        assert_eq!(candidate.matches(&query_criteria("Patient", "eye-colour=brown").unwrap()), Ok(false));

        install(Vec::new()).expect("the empty set installs");
        assert!(parse("Patient", "eye-colour=blue").is_err(), "unknown again");
        assert!(extract(&patient()).iter().all(|e| e.param != "eye-colour"));
        assert!(custom_parameters().is_empty());
        assert_eq!(generation(), before + 2);
    }

    #[test]
    fn custom_composites_and_references_work_in_queries() {
        let _exclusive = exclusive();
        let mut family_doctor = definition(
            "family-doctor",
            &["Patient"],
            "reference",
            "Patient.extension.where(url='http://example.org/fhir/StructureDefinition/family-doctor').value",
        );
        family_doctor["target"] = json!(["Practitioner"]);
        let mut tattoo =
            definition("tattoo", &["Patient"], "composite", "Patient.extension.where(url='http://example.org/fhir/StructureDefinition/tattoo')");
        tattoo["component"] = json!([
            {"definition": EYE_COLOUR, "expression": "extension.where(url='place').value"},
            {"definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate", "expression": "extension.where(url='date').value"}
        ]);
        install(vec![parameter(family_doctor), parameter(tattoo), eye_colour()]).expect("installs");

        let query = parse("Patient", "_include=Patient:family-doctor&family-doctor.name=smith&tattoo=arm$ge2021").expect("valid");
        assert_eq!(query.include[0].param.as_deref(), Some("family-doctor"));
        let ParamPath::Chain { target_types, .. } = &query.criteria[0].path else { panic!("a chain") };
        assert_eq!(target_types, &["Practitioner"]);
        assert!(matches!(&query.criteria[1].values[0], SearchValue::Composite(parts) if parts.len() == 2));
        assert!(parse("Patient", "family-doctor:Organization=o1").is_err(), "not a target");

        let entries = extract(&patient());
        assert!(entries.iter().any(|e| e.param == "family-doctor"
            && e.value == IndexValue::Reference { resource_type: Some("Practitioner".into()), id: Some("d1".into()), version: None, url: None }));
        assert!(entries.iter().any(|e| e.param == "tattoo$0" && e.group == 1));
        assert!(entries.iter().any(|e| e.param == "tattoo$1" && e.group == 1));
        let resource = patient();
        let candidate = Candidate::new(&resource);
        assert_eq!(candidate.matches(&query_criteria("Patient", "tattoo=arm$ge2021").unwrap()), Ok(true));
        assert_eq!(candidate.matches(&query_criteria("Patient", "tattoo=leg$ge2021").unwrap()), Ok(false));
    }

    #[test]
    fn a_core_code_wins_and_the_clash_is_reported() {
        let _exclusive = exclusive();
        // `gender` is a core parameter of Patient, not of Basic.
        let gender = parameter(definition("gender", &["Patient", "Basic"], "token", "Patient.gender | Basic.code"));
        let installed = install(vec![gender]).expect("installs");
        let url = "http://example.org/fhir/SearchParameter/gender";
        assert_eq!(installed.active, [url]);
        assert_eq!(installed.skipped.len(), 1);
        assert_eq!(installed.skipped[0].0, url);
        assert!(installed.skipped[0].1.contains("Patient"), "{}", installed.skipped[0].1);
        assert!(search_parameter("Patient", "gender").is_some_and(|p| p.core));
        assert!(search_parameter("Basic", "gender").is_some_and(|p| !p.core));
    }

    #[test]
    fn an_invalid_set_changes_nothing() {
        let _exclusive = exclusive();
        install(vec![eye_colour()]).expect("installs");
        let before = generation();
        let first = parameter(definition("twin-code", &["Patient"], "string", "Patient.name.family"));
        let mut second = first.clone();
        second.url.push_str("-again");
        let errors = install(vec![first, second]).expect_err("one code twice on Patient");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("twin-code") && errors[0].contains("-again"), "{}", errors[0]);

        let mut composite = definition("dangling", &["Patient"], "composite", "Patient.name");
        composite["component"] = json!([{"definition": "http://example.org/nowhere", "expression": "family"}]);
        assert!(install(vec![parameter(composite)]).is_err(), "a component must resolve");

        assert_eq!(generation(), before);
        assert_eq!(custom_parameters().iter().map(|p| p.url.as_str()).collect::<Vec<_>>(), [EYE_COLOUR]);
        assert!(search_parameter("Patient", "twin-code").is_none());
    }

    #[test]
    fn from_resource_rejects_what_cannot_be_searched() {
        let error = |resource: Value| SearchParameter::from_resource(&resource).expect_err("invalid");
        assert!(error(definition("broken", &["Patient"], "token", "Patient.where(")).contains("FHIRPath"));
        assert!(error(definition("nowhere", &["NoSuchType"], "token", "Patient.gender")).contains("base"));
        assert!(error(definition("near-ish", &["Location"], "special", "Location.position")).contains("special"));
        assert!(error(definition("-dash", &["Patient"], "token", "Patient.gender")).contains("code"));
        let mut no_expression = definition("bare", &["Patient"], "token", "x");
        no_expression.as_object_mut().unwrap().remove("expression");
        assert!(error(no_expression).contains("expression"));
        let resource_level = parameter(definition("any-tag", &["Resource"], "token", "Resource.meta.tag"));
        assert!(!resource_level.core);
        assert_eq!(resource_level.base, ["Resource"]);
    }
}
