//! The invariants of StructureDefinitions (`ElementDefinition.constraint.expression`), as a
//! profile validator evaluates them.
//!
//! An invariant belongs to an element path (`Observation.component`, `Quantity`,
//! `Observation.value[x]`) and holds when its expression is true on every element at that path.
//! Each element is evaluated on its own, as `$this` and `%context` (ig-1 uses
//! `%context.grouping`, so `%context` must be the element, not the resource), with `%resource`
//! and `%rootResource` the resource around it. An expression that gives false or nothing fails
//! for that element, as in the reference validator; a non-boolean single item counts as true
//! (FHIRPath's singleton evaluation) and several items are an error.
//!
//! ```
//! use fhir_core::fhirpath::Invariant;
//! let obs_6 = Invariant::compile(
//!     "Observation",
//!     "dataAbsentReason.empty() or value.empty()",
//! ).unwrap();
//! let observation = serde_json::json!({"resourceType": "Observation",
//!     "valueString": "x", "dataAbsentReason": {"text": "asked"}});
//! assert!(!obs_6.holds(&observation).unwrap());
//! ```

use serde_json::Value;

use super::error::FhirPathError;
use super::eval::to_boolean;
use super::{compile, Expression, Item};

/// R4 (4.0.1) core invariants whose expressions fail on valid content under FHIRPath N1's rules
/// for empty collections (the reference validator of the time returned false, not empty, from
/// `startsWith` and `is` on nothing): (key, R4 expression, expression to evaluate instead).
const R4_CORRECTIONS: &[(&str, &str, &str)] = &[
    // A Reference with only a display or identifier: `{}.startsWith('#')` is empty. The
    // correction is R5's ref-1, which also accepts `#` for the container.
    (
        "ref-1",
        "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
        "reference.exists() implies (reference.startsWith('#').not() or (reference.substring(1).trace('url') in \
         %rootResource.contained.id.trace('ids')) or (reference = '#' and %rootResource != %resource))",
    ),
    // An entry without fullUrl (a search result's outcome, a transaction's DELETE): the bdl-8 of
    // later FHIR versions.
    ("bdl-8", "fullUrl.contains('/_history/').not()", "fullUrl.exists() implies fullUrl.contains('/_history/').not()"),
    // A prediction without probability: `{} is decimal` is empty in N1 (false only since
    // FHIRPath 3.0, on which later FHIR versions rely for the same expression).
    (
        "ras-2",
        "probability is decimal implies (probability as decimal) <= 100",
        "probability.exists() implies (probability is decimal implies (probability as decimal) <= 100)",
    ),
];

/// The expression to evaluate for an invariant of the core R4 StructureDefinitions (or of a
/// profile that copies one): the corrected expression for the few whose R4 text fails on valid
/// content under FHIRPath N1 (ref-1, bdl-8, ras-2), else the expression itself.
pub fn corrected_r4_expression<'e>(key: &str, expression: &'e str) -> &'e str {
    R4_CORRECTIONS
        .iter()
        .find(|(k, r4, _)| *k == key && *r4 == expression)
        .map_or(expression, |(_, _, corrected)| corrected)
}

/// A compiled invariant: where it applies and what must hold there.
#[derive(Clone, Debug)]
pub struct Invariant {
    /// The steps of the element path below its type (`component` for `Observation.component`);
    /// `None` for the type itself.
    path: Option<Expression>,
    expression: Expression,
}

impl Invariant {
    /// Compiles the invariant of the element at `element_path` (`ElementDefinition.path`: its
    /// first step is the type the StructureDefinition constrains; a choice step `value[x]` is
    /// the element `value`, of whatever type).
    pub fn compile(element_path: &str, expression: &str) -> Result<Invariant, FhirPathError> {
        // Backquoted, so that an element named like a keyword (`contains`) stays a name.
        let steps: Vec<String> = element_path
            .split('.')
            .skip(1)
            .map(|step| format!("`{}`", step.strip_suffix("[x]").unwrap_or(step)))
            .collect();
        let path = match steps.is_empty() {
            true => None,
            false => Some(compile(&steps.join("."))?),
        };
        Ok(Invariant { path, expression: compile(expression)? })
    }

    /// The invariant's expression.
    pub fn expression(&self) -> &Expression {
        &self.expression
    }

    /// Whether the invariant holds on a resource (one that is not contained in another), its
    /// path starting at the resource.
    pub fn holds(&self, resource: &Value) -> Result<bool, FhirPathError> {
        Ok(self.violations(resource, resource, &Item::resource(resource))?.is_empty())
    }

    /// The elements at the invariant's path, starting from `root` (the resource for a resource's
    /// invariants, or an element of the type the StructureDefinition defines, e.g. a `Quantity`
    /// for qty-3), where it does not hold. `resource` is the resource around `root`
    /// (`%resource`), contained in `root_resource` (`%rootResource`; the same resource when it
    /// is not contained).
    pub fn violations<'a>(
        &self,
        root_resource: &'a Value,
        resource: &'a Value,
        root: &Item<'a>,
    ) -> Result<Vec<Item<'a>>, FhirPathError> {
        let elements = match &self.path {
            None => vec![root.clone()],
            Some(path) => path.evaluate_in(root_resource, resource, root)?,
        };
        let mut violations = Vec::new();
        for element in elements {
            let result = self.expression.evaluate_in(root_resource, resource, &element)?;
            if to_boolean(&result, "invariant")? != Some(true) {
                violations.push(element);
            }
        }
        Ok(violations)
    }
}
