//! What a search index stores about one resource: typed values per search parameter, produced
//! by [`super::extract`] and consumed by every index backend.

/// One value of one search parameter of a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    /// The parameter code, or a derived name:
    /// - `<code>:identifier` for the `Reference.identifier` of a reference parameter (a token),
    /// - `<code>:of-type` for an Identifier's type and value (`OfType`),
    /// - `<code>$<n>` for component `n` (0-based) of a composite parameter.
    pub param: String,
    /// Which occurrence of a composite parameter a component belongs to (1-based); 0 otherwise.
    pub group: u32,
    pub value: IndexValue,
}

/// Instants are stored as milliseconds since the Unix epoch; an open end is `i64::MIN`/`i64::MAX`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue {
    /// A string: case- and accent-folded for the default and `:contains` matches, plus the exact form.
    String { normalized: String, exact: String },
    /// A coded value: `system` is absent when the element carries none (plain `code`, boolean, string).
    Token { system: Option<String>, code: String },
    /// Text searchable by a token's `:text` (CodeableConcept.text, Coding.display), folded.
    Text { normalized: String },
    /// An Identifier's type coding and value, for `:of-type`.
    OfType { system: Option<String>, code: String, value: String },
    /// The time range covered, `[low, high)`.
    Date { low: i64, high: i64 },
    /// A number with the range its precision implies.
    Number { value: f64, low: f64, high: f64 },
    Quantity { value: f64, low: f64, high: f64, system: Option<String>, code: Option<String>, unit: Option<String> },
    /// A reference: relative (`type`/`id`/`version`), absolute (`url`, plus the type and id its
    /// tail names), or canonical (`url`, `version` from `|version`).
    Reference { resource_type: Option<String>, id: Option<String>, version: Option<String>, url: Option<String> },
    Uri(String),
}

/// Folds a string for matching: lower case, accents removed, inner whitespace collapsed.
pub fn normalize(text: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for character in text.nfd().filter(|c| !is_combining_mark(*c)) {
        if character.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(character.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_spaces() {
        assert_eq!(normalize("  Zoë   MÜLLER-Lüdenscheidt "), "zoe muller-ludenscheidt");
        assert_eq!(normalize("Ångström"), "angstrom");
        assert_eq!(normalize(""), "");
    }
}
