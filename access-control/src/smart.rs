//! SMART App Launch scopes, v1 (`user/Observation.read`, `.write`, `.*`) and v2
//! (`user/Observation.rs`, the letters of `cruds` in that order), each turned into the
//! interactions it allows on one resource type (or `*`). Scopes that are not resource scopes
//! (`openid`, `fhirUser`, `launch/patient`, `offline_access`, ...) are left out.

/// Whose data a scope is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// The patient in the launch context: only that patient's compartment.
    Patient,
    /// What the signed-in user may see.
    User,
    /// A backend service.
    System,
}

/// One resource scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    /// A resource type, or `*`.
    pub resource_type: String,
    /// Interaction names, as in the role rules (`read`, `search`, `create`, ...).
    pub interactions: Vec<&'static str>,
    /// A v2 query restriction (`?category=laboratory`), if any.
    pub query: Option<String>,
}

/// The resource scopes in a space-separated `scope` claim; malformed ones are left out.
pub fn parse(claim: &str) -> Vec<Scope> {
    claim.split_whitespace().filter_map(parse_one).collect()
}

fn parse_one(scope: &str) -> Option<Scope> {
    let (context, rest) = scope.split_once('/')?;
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return None,
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query.to_string())),
        None => (rest, None),
    };
    let (resource_type, permissions) = rest.split_once('.')?;
    let valid_type = resource_type == "*" || (resource_type.chars().next()?.is_ascii_uppercase() && resource_type.chars().all(|c| c.is_ascii_alphanumeric()));
    if !valid_type {
        return None;
    }
    let mut interactions = Vec::new();
    match permissions {
        "read" => interactions.extend(READ.iter().chain(SEARCH)),
        "write" => interactions.extend(WRITE),
        "*" => interactions.extend(READ.iter().chain(SEARCH).chain(WRITE)),
        letters => {
            // v2: a non-empty subsequence of "cruds", in that order.
            let mut rest = "cruds";
            for letter in letters.chars() {
                let at = rest.find(letter)?;
                rest = &rest[at + 1..];
                interactions.extend(match letter {
                    'c' => &["create", "operation"][..],
                    'r' => READ,
                    'u' => &["update", "patch"][..],
                    'd' => &["delete"][..],
                    _ => SEARCH,
                });
            }
            if interactions.is_empty() {
                return None;
            }
        }
    }
    Some(Scope { context, resource_type: resource_type.to_string(), interactions, query })
}

const READ: &[&str] = &["read", "vread", "history"];
const SEARCH: &[&str] = &["search"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "operation"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes() {
        let scopes = parse("openid fhirUser launch/patient user/Observation.read system/*.cruds patient/Patient.rs patient/Observation.rs?category=laboratory user/Encounter.write user/Bad.sc x/Patient.read user/lower.read user/Claim.cu");
        assert_eq!(scopes.len(), 6, "{scopes:?}");
        assert_eq!(scopes[0], Scope { context: Context::User, resource_type: "Observation".into(), interactions: vec!["read", "vread", "history", "search"], query: None });
        assert_eq!(scopes[1].interactions.len(), 9, "cruds is every interaction");
        assert_eq!(scopes[2].context, Context::Patient);
        assert_eq!(scopes[3].query.as_deref(), Some("category=laboratory"));
        assert_eq!(scopes[4].interactions, vec!["create", "update", "patch", "delete", "operation"]);
        assert_eq!(scopes[5].interactions, vec!["create", "operation", "update", "patch"]);
        assert_eq!(parse("user/Patient.cr").len(), 1);
        assert!(parse("user/Patient.rc").is_empty() && parse("user/Patient.rr").is_empty(), "letters out of order or repeated");
        assert!(parse("user/Patient.").is_empty() && parse("user/Patient.x").is_empty());
    }
}
