//! Expanded value sets of the required bindings, for code membership checks.

use super::fast_hash::{FastMap, FastSet};

/// A value set used by a required binding of an R4 element.
#[derive(Clone, Debug)]
pub struct ValueSet {
    pub url: String,
    /// Why the codes are unknown, when they could not be computed from the package (codes from
    /// external systems such as UCUM, BCP-13 or ISO 4217). Such a value set is not checked.
    pub not_checkable_reason: Option<String>,
    by_system: FastMap<String, FastSet<String>>,
}

impl ValueSet {
    pub(crate) fn new(url: String, not_checkable_reason: Option<String>, include: Vec<(String, Vec<String>)>) -> Self {
        let mut by_system: FastMap<String, FastSet<String>> = FastMap::default();
        for (system, codes) in include {
            by_system.entry(system).or_default().extend(codes);
        }
        Self { url, not_checkable_reason, by_system }
    }

    /// Whether membership can be checked against this value set.
    pub fn is_checkable(&self) -> bool {
        self.not_checkable_reason.is_none()
    }

    /// Whether a bare code (a `code` element, whose system is implied) is in the value set.
    pub fn contains_code(&self, code: &str) -> bool {
        self.by_system.values().any(|codes| codes.contains(code))
    }

    /// Whether the code of that system is in the value set.
    pub fn contains(&self, system: &str, code: &str) -> bool {
        self.by_system.get(system).is_some_and(|codes| codes.contains(code))
    }

    /// The code systems the value set draws its codes from.
    /// Every `(system, code)` of the expansion.
    pub fn codes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_system.iter().flat_map(|(system, codes)| codes.iter().map(move |code| (system.as_str(), code.as_str())))
    }

    pub fn systems(&self) -> impl Iterator<Item = &str> {
        self.by_system.keys().map(String::as_str)
    }

    /// Number of codes in the expansion.
    pub fn len(&self) -> usize {
        self.by_system.values().map(FastSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
