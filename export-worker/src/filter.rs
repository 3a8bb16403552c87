//! Which resources of a snapshot go into an export, decided per resource with the in-memory
//! matcher: the Patient compartment (and which patients'), `_typeFilter`, and the owner's
//! query-restricted scopes. A plan with none of these reads no body: every resource goes.

use std::collections::{HashMap, HashSet};

use fhir_core::search::matcher::Candidate;
use fhir_core::search::Criterion;
use serde_json::Value;

use crate::job::Plan;

pub struct Filter {
    patient_compartment: bool,
    patients: Option<HashSet<String>>,
    /// Per type, lists of queries; a resource must match one query of each list.
    queries: HashMap<String, Vec<Vec<Vec<Criterion>>>>,
}

impl Filter {
    /// The filter of `plan`; an error names a query that does not parse.
    pub fn new(plan: &Plan) -> Result<Self, String> {
        let mut queries: HashMap<String, Vec<Vec<Vec<Criterion>>>> = HashMap::new();
        for lists in [&plan.type_filters, &plan.restrictions] {
            for (resource_type, list) in lists {
                let parsed = list.iter().map(|query| criteria(resource_type, query)).collect::<Result<Vec<_>, _>>()?;
                queries.entry(resource_type.clone()).or_default().push(parsed);
            }
        }
        let patients = plan.patients.as_ref().map(|ids| ids.iter().cloned().collect());
        Ok(Filter { patient_compartment: plan.patient_compartment, patients, queries })
    }

    /// Whether resources of `resource_type` must be read to be decided.
    pub fn reads(&self, resource_type: &str) -> bool {
        self.patient_compartment || self.queries.contains_key(resource_type)
    }

    /// Whether the resource `body` (of `resource_type`) goes into the export.
    pub fn accepts(&self, resource_type: &str, body: &[u8]) -> bool {
        if !self.reads(resource_type) {
            return true;
        }
        let Ok(resource) = serde_json::from_slice::<Value>(body) else { return false };
        let candidate = Candidate::new(&resource);
        if self.patient_compartment && !self.in_patient_compartment(&candidate) {
            return false;
        }
        self.queries.get(resource_type).is_none_or(|lists| {
            lists.iter().all(|list| list.iter().any(|criteria| candidate.matches(criteria) == Ok(true)))
        })
    }

    fn in_patient_compartment(&self, candidate: &Candidate) -> bool {
        if candidate.resource_type() == "Patient" {
            return self.patients.as_ref().is_none_or(|patients| patients.contains(candidate.id()));
        }
        let owners = candidate.compartment_owners("Patient");
        match &self.patients {
            Some(patients) => owners.iter().any(|owner| patients.contains(*owner)),
            None => !owners.is_empty(),
        }
    }
}

/// The criteria of one query (`category=laboratory`) on `resource_type`; the error names it.
pub fn criteria(resource_type: &str, query: &str) -> Result<Vec<Criterion>, String> {
    fhir_core::search::matcher::query_criteria(resource_type, query).map_err(|why| format!("{resource_type}?{query}: {why}"))
}
