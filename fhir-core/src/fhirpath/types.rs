//! Type specifiers (`Quantity`, `FHIR.string`, `System.DateTime`) and the `is` test behind
//! `is`, `as` and `ofType`.
//!
//! An unqualified name is a FHIR type when R4 has one of that name (so `Quantity` and `string`
//! are FHIR types), else a System type (`DateTime`). A FHIR type matches its subtypes along the
//! StructureDefinitions' `base` chain: `Age` is a `Quantity`, `Patient` a `DomainResource`, `code`
//! a `string`. A FHIR primitive also matches the System type of its value (`dateTime` is a
//! `System.DateTime`), which the R4 composite components (`value.as(DateTime)`) rely on.

use super::item::{ItemType, SystemType};
use crate::definitions::r4;

/// A resolved type specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeSpec {
    /// An R4 type, by its name as the definitions hold it.
    Fhir(&'static str),
    System(SystemType),
}

/// Resolves a possibly qualified type name; `None` when it names no type.
pub(crate) fn resolve(qualified: &[&str]) -> Option<TypeSpec> {
    match qualified {
        ["FHIR", name] => fhir_type(name).map(TypeSpec::Fhir),
        ["System", name] => SystemType::from_name(name).map(TypeSpec::System),
        [name] => fhir_type(name).map(TypeSpec::Fhir).or_else(|| SystemType::from_name(name).map(TypeSpec::System)),
        _ => None,
    }
}

fn fhir_type(name: &str) -> Option<&'static str> {
    r4().type_def(name).map(|def| def.name.as_str())
}

/// Whether a value of `item_type` is of the type `spec` or a subtype of it.
pub(crate) fn is_of_type(item_type: ItemType, spec: TypeSpec) -> bool {
    match (item_type, spec) {
        (ItemType::Fhir(fhir), TypeSpec::Fhir(target)) => fhir_is_a(fhir.name, target),
        (ItemType::Fhir(fhir), TypeSpec::System(target)) => {
            fhir.primitive.is_some_and(|p| SystemType::of_primitive(p) == target)
        }
        (ItemType::System(system), TypeSpec::System(target)) => system == target,
        (ItemType::System(_), TypeSpec::Fhir(_)) | (ItemType::Unknown, _) => false,
    }
}

/// Whether the FHIR type `name` is `target` or derives from it.
pub(crate) fn fhir_is_a(name: &str, target: &str) -> bool {
    let definitions = r4();
    let mut current = Some(name);
    // The base chain is at most a handful long; the bound guards against a cyclic data file.
    for _ in 0..16 {
        let Some(name) = current else {
            return false;
        };
        if name == target {
            return true;
        }
        current = definitions.type_def(name).and_then(|def| def.base.as_deref());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_prefer_fhir_types() {
        assert_eq!(resolve(&["Quantity"]), Some(TypeSpec::Fhir("Quantity")));
        assert_eq!(resolve(&["string"]), Some(TypeSpec::Fhir("string")));
        assert_eq!(resolve(&["DateTime"]), Some(TypeSpec::System(SystemType::DateTime)));
        assert_eq!(resolve(&["System", "Quantity"]), Some(TypeSpec::System(SystemType::Quantity)));
        assert_eq!(resolve(&["FHIR", "Patient"]), Some(TypeSpec::Fhir("Patient")));
        assert_eq!(resolve(&["FHIR", "DateTime"]), None);
        assert_eq!(resolve(&["Patientt"]), None);
        assert_eq!(resolve(&["A", "B", "C"]), None);
    }

    #[test]
    fn subtypes_follow_the_base_chain() {
        assert!(fhir_is_a("Age", "Quantity"));
        assert!(fhir_is_a("Patient", "Resource"));
        assert!(fhir_is_a("Patient", "DomainResource"));
        assert!(!fhir_is_a("Bundle", "DomainResource"));
        assert!(fhir_is_a("code", "string"));
        assert!(!fhir_is_a("Quantity", "Age"));
        assert!(!fhir_is_a("dateTime", "date"));
    }
}
