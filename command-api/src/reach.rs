//! How far a principal reaches inside the types its grants allow. Two things bound it:
//!
//! - a SMART patient context ([`Grants::patient`]): only the resources of that patient's
//!   compartment (and the Patient itself) are read, searched, included, listed in a history or
//!   written, and searches may not chain or use `_has` (they would look into other records);
//! - v2 query-restricted scopes ([`Grants::restrictions`], `patient/Observation.rs?category=laboratory`):
//!   a resource is within reach of an interaction when it matches one of the scope's queries.
//!
//! Searches are bounded before they run ([`Principal::bound_search`]: the compartment and the
//! restricting criteria join the query); every resource that comes back, read, included or
//! written is checked on its body with the in-memory matcher ([`Principal::reaches`]). Principals
//! without bounds skip all of this.

use fhir_core::definitions::r4;
use fhir_core::search::matcher::Candidate;
use fhir_core::search::{CompartmentFilter, Criterion, ParamPath, SearchQuery};
use serde_json::Value;

use crate::access::{Grants, Interaction};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::resource::Resource;

impl Principal {
    /// Whether anything bounds this principal beyond its grants.
    pub fn is_bounded(&self) -> bool {
        self.grants.patient().is_some() || self.grants.restricts_any()
    }

    /// `Ok` if `resource` (a body) is within reach of `interaction`, else 403 saying why.
    pub fn check_resource(&self, interaction: Interaction, resource: &Value) -> ApiResult<()> {
        if !self.is_bounded() {
            return Ok(());
        }
        outside(self.grants.as_ref(), interaction, resource).map_or(Ok(()), |why| Err(ApiError::Forbidden(why)))
    }

    /// [`Principal::check_resource`] on a stored body.
    pub fn check_stored(&self, interaction: Interaction, body: &[u8]) -> ApiResult<()> {
        if !self.is_bounded() {
            return Ok(());
        }
        let resource: Value = serde_json::from_slice(body).map_err(|error| ApiError::Internal(format!("stored body: {error}")))?;
        self.check_resource(interaction, &resource)
    }

    /// Whether a stored body is within reach of `interaction`.
    pub fn reaches(&self, interaction: Interaction, body: &[u8]) -> bool {
        self.check_stored(interaction, body).is_ok()
    }

    /// `Ok` if a write may replace `current` (the live version's body, if any) with `new` (none
    /// for a delete).
    pub fn check_write(&self, interaction: Interaction, current: Option<&[u8]>, new: Option<&Resource>) -> ApiResult<()> {
        if !self.is_bounded() {
            return Ok(());
        }
        if let Some(body) = current {
            self.check_stored(interaction, body)?;
        }
        new.map_or(Ok(()), |resource| self.check_resource(interaction, &Value::Object(resource.clone())))
    }

    /// Narrows a search to what this principal reaches: into the patient's compartment, and to
    /// the queries restricting the searched type. 403 for what cannot be narrowed: a chain or
    /// `_has` with a patient context, another compartment, several restricted types at once.
    pub fn bound_search(&self, query: &mut SearchQuery) -> ApiResult<()> {
        if let Some(patient) = self.grants.patient() {
            bound_to_patient(patient, query)?;
        }
        if !self.grants.restricts_any() {
            return Ok(());
        }
        if query.types.is_empty() {
            return Err(ApiError::Forbidden("this token's scopes restrict some types to a query: name the types searched with _type".into()));
        }
        for resource_type in query.types.clone() {
            let restrictions = self.grants.restrictions(Interaction::Search, &resource_type);
            if restrictions.is_empty() {
                continue;
            }
            if query.types.len() > 1 {
                return Err(ApiError::Forbidden(format!(
                    "this token's scopes restrict searches of {resource_type} to a query: search {resource_type} on its own"
                )));
            }
            let criteria = combined(&resource_type, &restrictions)?;
            query.criteria.extend(criteria);
        }
        Ok(())
    }
}

/// Why `resource` is out of reach, or `None` when it is within.
fn outside(grants: &dyn Grants, interaction: Interaction, resource: &Value) -> Option<String> {
    let candidate = Candidate::new(resource);
    let name = format!("{}/{}", candidate.resource_type(), candidate.id());
    if let Some(patient) = grants.patient() {
        if !candidate.in_compartment(&patient_compartment(patient, &[])) {
            return Some(format!("{name} is outside the compartment of Patient/{patient}, the patient of this token's launch context"));
        }
    }
    let restrictions = grants.restrictions(interaction, candidate.resource_type());
    if restrictions.is_empty() {
        return None;
    }
    let matches_one = restrictions.iter().any(|query| {
        criteria_of(candidate.resource_type(), query).is_some_and(|criteria| candidate.matches(&criteria) == Ok(true))
    });
    (!matches_one).then(|| format!("{name} does not match the query this token's scopes restrict {} to", interaction.as_str()))
}

/// The first of `types` that is neither Patient nor a member of the Patient compartment.
pub fn outside_patient_compartment(types: &[String]) -> Option<&String> {
    let members = r4().compartment_members("Patient");
    types.iter().find(|t| *t != "Patient" && !members.iter().any(|(member, _)| member == *t))
}

/// The compartment of `Patient/patient`, over `types` (all its member types when empty).
fn patient_compartment(patient: &str, types: &[String]) -> CompartmentFilter {
    let include_self = types.is_empty() || types.iter().any(|t| t == "Patient");
    CompartmentFilter::new("Patient", patient, types, include_self).expect("Patient defines a compartment")
}

fn bound_to_patient(patient: &str, query: &mut SearchQuery) -> ApiResult<()> {
    if query.criteria.iter().any(|criterion| !matches!(criterion.path, ParamPath::Direct { .. })) {
        return Err(ApiError::Forbidden(format!(
            "chained parameters and _has are not available to a token in the context of Patient/{patient}: they look into records outside its compartment"
        )));
    }
    match &query.compartment {
        Some(compartment) if compartment.resource_type == "Patient" && compartment.id == patient => Ok(()),
        Some(compartment) => Err(ApiError::Forbidden(format!(
            "{}/{} is not the patient of this token's launch context (Patient/{patient})",
            compartment.resource_type, compartment.id
        ))),
        None => {
            if let Some(outside) = outside_patient_compartment(&query.types) {
                return Err(ApiError::Forbidden(format!(
                    "{outside} is not in the Patient compartment; a token in the context of Patient/{patient} sees only that compartment"
                )));
            }
            query.compartment = Some(patient_compartment(patient, &query.types));
            Ok(())
        }
    }
}

/// The criteria of a scope's query (`category=laboratory`) on `resource_type`; `None` when it
/// is not a query of criteria (such a scope reaches nothing).
fn criteria_of(resource_type: &str, query: &str) -> Option<Vec<Criterion>> {
    fhir_core::search::matcher::query_criteria(resource_type, query).ok().filter(|criteria| !criteria.is_empty())
}

/// One set of criteria that is true exactly when one of `restrictions` is: the restriction's
/// own, or, for several, their values joined when each is one criterion on the same parameter
/// (`category=laboratory` and `category=vital-signs`: `category=laboratory,vital-signs`).
fn combined(resource_type: &str, restrictions: &[&str]) -> ApiResult<Vec<Criterion>> {
    let malformed = |query: &str| ApiError::Forbidden(format!("this token's scope query '{query}' on {resource_type} is not a search this server can run"));
    let mut sets = Vec::with_capacity(restrictions.len());
    for query in restrictions {
        sets.push(criteria_of(resource_type, query).ok_or_else(|| malformed(query))?);
    }
    if sets.len() == 1 {
        return Ok(sets.remove(0));
    }
    let first = &sets[0];
    let joinable = sets.iter().all(|set| set.len() == 1 && set[0].path == first[0].path && first.len() == 1);
    if !joinable {
        return Err(ApiError::Forbidden(format!(
            "this token's scopes restrict {resource_type} to several queries that cannot be joined into one search; search with a token that has one of them"
        )));
    }
    let mut joined = sets[0][0].clone();
    for set in &sets[1..] {
        joined.values.extend(set[0].values.iter().cloned());
    }
    Ok(vec![joined])
}
