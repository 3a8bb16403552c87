//! Index and alias names. Each tenant and resource type has an alias,
//! `{prefix}.{tenant}.{type}`, that points at one concrete index, `{alias}.g{generation}`; a
//! reindex builds the next generation and moves the alias.
//!
//! Index names must be lower case, tenant ids need not be: an upper-case letter is written as
//! `_` and the letter, and `_` itself as `__`, so that no two tenants share a name. Neither
//! tenants nor types hold a `.`, so a name splits back unambiguously.

/// Names under one prefix (one deployment).
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// `prefix` must be lower case, without `.` (checked by [`crate::OpenSearchIndex::new`]).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn alias(&self, tenant: &str, resource_type: &str) -> String {
        format!("{}{}", self.tenant_prefix(tenant), resource_type.to_ascii_lowercase())
    }

    /// What every alias of `tenant` starts with (a type follows).
    pub fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}.{}.", self.prefix, encode_tenant(tenant))
    }

    pub fn index(&self, alias: &str, generation: u32) -> String {
        format!("{alias}.g{generation}")
    }

    /// The generation of a concrete index of this prefix.
    pub fn generation(&self, index: &str) -> Option<u32> {
        index.strip_prefix(&self.prefix)?.rsplit_once(".g")?.1.parse().ok()
    }
}

fn encode_tenant(tenant: &str) -> String {
    let mut encoded = String::with_capacity(tenant.len() + 4);
    for character in tenant.chars() {
        match character {
            'A'..='Z' => {
                encoded.push('_');
                encoded.push(character.to_ascii_lowercase());
            }
            '_' => encoded.push_str("__"),
            other => encoded.push(other),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_differing_only_in_case_get_different_names() {
        let names = Names::new("fhir");
        assert_eq!(names.alias("t1", "Patient"), "fhir.t1.patient");
        assert_ne!(names.alias("Ab", "Patient"), names.alias("ab", "Patient"));
        assert_ne!(names.alias("_a", "Patient"), names.alias("A", "Patient"));
        let index = names.index(&names.alias("A_b", "Observation"), 7);
        assert_eq!(index, "fhir._a__b.observation.g7");
        assert_eq!(names.generation(&index), Some(7));
    }
}
