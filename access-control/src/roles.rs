//! Role groups, as FHIR Works on AWS has them: a token's groups (Cognito's `cognito:groups`)
//! name rules, each a list of interactions on a list of resource types (`*` for all). A caller
//! may do what any of its groups allows; a caller in no known group may do nothing.

use std::collections::BTreeMap;

use serde::Deserialize;

/// FHIR R4's financial module: what `non-practitioner` may read by default.
pub const FINANCIAL_TYPES: &[&str] = &[
    "Account",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "ExplanationOfBenefit",
    "InsurancePlan",
    "Invoice",
    "PaymentNotice",
    "PaymentReconciliation",
];

/// The interactions of reading.
const READING: &[&str] = &["read", "vread", "search", "history"];

/// One grant: these interactions on these types.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub interactions: Vec<String>,
    pub types: Vec<String>,
}

/// Group name to its rules.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RoleRules(pub BTreeMap<String, Vec<Rule>>);

impl Default for RoleRules {
    /// `practitioner`: everything; `non-practitioner`: reading financial resources; `auditor`:
    /// reading Patient.
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        RoleRules(BTreeMap::from([
            ("practitioner".to_string(), vec![Rule { interactions: strings(&["*"]), types: strings(&["*"]) }]),
            ("non-practitioner".to_string(), vec![Rule { interactions: strings(READING), types: strings(FINANCIAL_TYPES) }]),
            ("auditor".to_string(), vec![Rule { interactions: strings(READING), types: strings(&["Patient"]) }]),
        ]))
    }
}

impl RoleRules {
    /// Refuses interactions not in `known` (besides `*`) and empty lists.
    pub fn check(&self, known: &[&str]) -> Result<(), String> {
        for (group, rules) in &self.0 {
            for rule in rules {
                if rule.interactions.is_empty() || rule.types.is_empty() {
                    return Err(format!("a rule of group {group} lists no interactions or no types"));
                }
                if let Some(unknown) = rule.interactions.iter().find(|i| *i != "*" && !known.contains(&i.as_str())) {
                    return Err(format!("group {group}: unknown interaction {unknown} (known: {}, or *)", known.join(", ")));
                }
            }
        }
        Ok(())
    }

    /// Whether any of `groups` allows `interaction` on `resource_type` (or, with `None`, on
    /// every type at once).
    pub fn allows(&self, groups: &[String], interaction: &str, resource_type: Option<&str>) -> bool {
        groups.iter().filter_map(|group| self.0.get(group)).flatten().any(|rule| {
            let interaction_ok = rule.interactions.iter().any(|i| i == "*" || i == interaction);
            let type_ok = rule.types.iter().any(|t| t == "*" || Some(t.as_str()) == resource_type);
            interaction_ok && type_ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_groups() {
        let rules = RoleRules::default();
        let groups = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let practitioner = groups(&["practitioner"]);
        assert!(rules.allows(&practitioner, "delete", Some("Observation")));
        assert!(rules.allows(&practitioner, "history", None), "every type at once");
        let billing = groups(&["non-practitioner"]);
        assert!(rules.allows(&billing, "search", Some("Claim")));
        assert!(!rules.allows(&billing, "create", Some("Claim")));
        assert!(!rules.allows(&billing, "read", Some("Patient")));
        assert!(!rules.allows(&billing, "search", None));
        let auditor = groups(&["auditor"]);
        assert!(rules.allows(&auditor, "vread", Some("Patient")));
        assert!(!rules.allows(&auditor, "read", Some("Observation")));
        assert!(!rules.allows(&groups(&["visitor"]), "read", Some("Patient")), "an unknown group may do nothing");
        assert!(rules.allows(&groups(&["visitor", "auditor"]), "read", Some("Patient")), "any group's grant counts");
        assert!(rules.check(&["read", "vread", "search", "history", "create", "update", "patch", "delete", "operation"]).is_ok());
        assert!(rules.check(&["read"]).is_err());
    }
}
