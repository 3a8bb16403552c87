//! Implementation Guides: FHIR packages and what the server does with them.
//!
//! - [`package`]: reading a package tarball (`package/package.json` and its conformance
//!   resources), with bounded sizes.
//! - [`store`]: the packages installed in a data directory, and dependency resolution.
//! - [`Conformance`]: everything the loaded packages define, indexed: profiles, ValueSets
//!   (expanded where possible, see [`terminology`]), SearchParameters.
//! - [`profile`]: validation of a resource against a StructureDefinition profile:
//!   cardinality, types, fixed and pattern values, slicing, required bindings, and FHIRPath
//!   invariants. `mustSupport` is ignored, as the specification allows a server to.
//!
//! Installed packages are per server: with multi-tenancy on, every tenant sees the same ones.

pub mod package;
pub mod profile;
pub mod store;
pub mod terminology;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use fhir_core::{Issue, IssueType};

pub use package::{Manifest, Package, PackageError};
pub use profile::Profile;
pub use store::{resolve, PackageStore};
use terminology::{canonical, Expansion};

/// The conformance resources of a set of packages, ready for validation.
#[derive(Default)]
pub struct Conformance {
    packages: Vec<Manifest>,
    profiles: HashMap<String, Arc<Profile>>,
    value_sets: HashMap<String, Expansion>,
    search_parameters: Vec<Value>,
    /// The canonical `url|version` of each package's ImplementationGuide.
    guides: Vec<String>,
    /// Profiles that could not be read, with the reason.
    unusable: Vec<String>,
}

impl Conformance {
    /// Indexes the packages' resources; a later package's resource replaces an earlier one's
    /// with the same URL.
    pub fn new(packages: &[Package]) -> Conformance {
        let mut conformance = Conformance { packages: packages.iter().map(|p| p.manifest.clone()).collect(), ..Conformance::default() };
        let mut value_sets = HashMap::new();
        let mut code_systems = HashMap::new();
        for package in packages {
            let guide = package.resources_of("ImplementationGuide").find_map(|ig| ig.get("url").and_then(Value::as_str)).map(String::from);
            let guide = guide.or_else(|| package.manifest.canonical.as_ref().map(|c| format!("{}/ImplementationGuide/{}", c.trim_end_matches('/'), package.manifest.name)));
            conformance.guides.extend(guide.map(|url| format!("{url}|{}", package.manifest.version)));
            for resource in &package.resources {
                let url = resource.get("url").and_then(Value::as_str).map(|u| canonical(u).to_string());
                match (resource.get("resourceType").and_then(Value::as_str), url) {
                    (Some("StructureDefinition"), Some(url)) if is_profile(resource) => match profile::model::parse(resource) {
                        Ok(profile) => {
                            conformance.profiles.insert(url, Arc::new(profile));
                        }
                        Err(why) => conformance.unusable.push(why),
                    },
                    (Some("ValueSet"), Some(url)) => {
                        value_sets.insert(url, resource.clone());
                    }
                    (Some("CodeSystem"), Some(url)) => {
                        code_systems.insert(url, resource.clone());
                    }
                    (Some("SearchParameter"), Some(_)) => conformance.search_parameters.push(resource.clone()),
                    _ => {}
                }
            }
        }
        conformance.value_sets = terminology::expand_all(&value_sets, &code_systems);
        conformance
    }

    /// The manifests of the loaded packages.
    pub fn packages(&self) -> &[Manifest] {
        &self.packages
    }

    /// A profile by canonical URL (a `|version` is ignored).
    pub fn profile(&self, url: &str) -> Option<&Profile> {
        self.profiles.get(canonical(url)).map(Arc::as_ref)
    }

    /// The profiles on resource types, as `(type, url)`, sorted.
    pub fn resource_profiles(&self) -> Vec<(&str, &str)> {
        let mut profiles: Vec<(&str, &str)> = self.profiles.values().filter(|p| p.is_resource).map(|p| (p.type_name.as_str(), p.url.as_str())).collect();
        profiles.sort_unstable();
        profiles
    }

    /// The canonical `url|version` of each loaded package's ImplementationGuide (as declared, or
    /// made from the package's canonical and name).
    pub fn guides(&self) -> &[String] {
        &self.guides
    }

    /// The SearchParameter resources of the packages.
    pub fn search_parameters(&self) -> &[Value] {
        &self.search_parameters
    }

    /// Profiles that could not be read, with the reason.
    pub fn unusable(&self) -> &[String] {
        &self.unusable
    }

    /// Whether a code is in a ValueSet: one of the packages', or one of R4. `None` when that
    /// cannot be known here.
    pub fn contains(&self, value_set: &str, system: Option<&str>, code: &str) -> Option<bool> {
        match self.value_sets.get(canonical(value_set)) {
            Some(expansion) => Some(match system {
                Some(system) => expansion.contains(system, code),
                None => expansion.contains_code(code),
            }),
            None => terminology::core_contains(value_set, system, code),
        }
    }

    /// Whether a coded value (a `code` string, Coding, Quantity or CodeableConcept) has a code
    /// in the ValueSet; `None` when it cannot be told (no codes, or an uncheckable ValueSet).
    pub fn value_in(&self, value_set: &str, value: &Value) -> Option<bool> {
        match value {
            Value::String(code) => self.contains(value_set, None, code),
            Value::Object(object) => {
                if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                    let answers: Vec<Option<bool>> = codings.iter().map(|coding| self.value_in(value_set, coding)).collect();
                    return if answers.contains(&Some(true)) {
                        Some(true)
                    } else if !answers.is_empty() && answers.iter().all(Option::is_some) {
                        Some(false)
                    } else {
                        None
                    };
                }
                let code = object.get("code").and_then(Value::as_str)?;
                self.contains(value_set, object.get("system").and_then(Value::as_str), code)
            }
            _ => None,
        }
    }

    /// Validates a resource against one profile; an error issue if the profile is not loaded.
    pub fn validate(&self, resource: &Value, profile_url: &str) -> Vec<Issue> {
        let Some(profile) = self.profile(profile_url) else {
            return vec![Issue::error(IssueType::NotFound, format!("the profile {} is not known to this server", canonical(profile_url)))];
        };
        let root = resource.get("resourceType").and_then(Value::as_str).unwrap_or(&profile.type_name).to_string();
        profile::validate(profile::Scope::new(self), profile, resource, &root)
    }

    /// Validates a resource against the loaded profiles it claims in `meta.profile` and the
    /// ones `required` names, each once. Claimed profiles this server does not know are not
    /// checked (as the specification allows); a required one it does not know is an error.
    pub fn validate_claimed(&self, resource: &Value, required: &[String]) -> Vec<Issue> {
        let claimed = resource.pointer("/meta/profile").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        let mut urls: Vec<&str> = claimed.filter(|url| self.profile(url).is_some()).collect();
        for url in required {
            if !urls.iter().any(|u| canonical(u) == canonical(url)) {
                urls.push(url);
            }
        }
        urls.iter().flat_map(|url| self.validate(resource, url)).collect()
    }
}

/// A StructureDefinition that constrains a type (not a base type, logical model or extension
/// definition on a specialization).
fn is_profile(definition: &Value) -> bool {
    definition.get("derivation").and_then(Value::as_str) == Some("constraint") && definition.get("kind").and_then(Value::as_str) != Some("logical")
}
