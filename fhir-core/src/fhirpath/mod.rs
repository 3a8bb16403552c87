//! FHIRPath over `serde_json` resources: the language of R4 SearchParameter expressions and of
//! StructureDefinition invariants (FHIRPath N1, with the FHIR additions `extension()`,
//! `resolve()`, `memberOf()`, `htmlChecks()` and the variables `%resource`, `%rootResource`,
//! `%context`, `%ucum`, `%sct`, `%loinc`, `%vs-*`, `%ext-*`).
//!
//! [`compile`] parses an expression once into an [`Expression`], which callers cache;
//! [`Expression::evaluate`] runs it over a resource and returns a collection of [`Item`]s.
//! Items are mostly borrowed JSON nodes, typed by the R4 StructureDefinitions as they are
//! reached: resources by `resourceType`, elements by their definition, choice elements by the
//! JSON key (`valueQuantity` is a `Quantity`), so that `as`, `is` and `ofType` work.
//!
//! ```
//! let expression = fhir_core::fhirpath::compile("Patient.name.where(use = 'official').family").unwrap();
//! let patient = serde_json::json!({"resourceType": "Patient", "name": [
//!     {"use": "official", "family": "Chalmers"}, {"use": "nickname", "given": ["Jim"]}]});
//! let family = expression.evaluate(&patient).unwrap();
//! assert_eq!(family.len(), 1);
//! assert_eq!(family[0].as_str(), Some("Chalmers"));
//! assert_eq!(family[0].fhir_type(), Some("string"));
//! ```
//!
//! Layout:
//! - `lexer`, `parser`, `literals`: text to the syntax tree of `ast`, with functions, types and
//!   environment variables resolved at compile time.
//! - [`item`]: the items of a collection and their types.
//! - `navigate`: typed path steps over JSON; `types`: `is`/`as`/`ofType`.
//! - `eval`: the evaluator and operators; `compare`: equality and ordering (partial dates);
//!   `distinct`: duplicate-free collections for `|`; `arithmetic`: `+ - * / div mod &`.
//! - `functions`, `strings`, `conversions`, `fhir`, `xhtml`: the function library.
//! - [`Invariant`]: StructureDefinition invariants, evaluated element by element.
//!
//! Deliberate departures from the specification, and limits:
//! - `as` keeps the items of the type from a collection of any size (the specification makes
//!   more than one item an error; R4 search parameters apply it to repeating elements).
//! - A FHIR primitive is also of its System type (`dateTime` is a `System.DateTime`).
//! - `resolve()` does not fetch: see `fhir`.
//! - `htmlChecks()` checks well-formedness, the allowed elements and content, not every
//!   attribute rule: see `xhtml`.
//! - Not implemented (compile errors `UnsupportedFunction`): `aggregate`, the math functions,
//!   `toChars`, `timeOfDay`, `conformsTo`, `elementDefinition`, `slice`, `checkModifiers`,
//!   `subsumes`, `subsumedBy`, `getValue`; no R4 or IPS invariant uses them.

mod arithmetic;
mod ast;
mod compare;
mod conversions;
mod distinct;
mod error;
mod eval;
mod fhir;
mod functions;
mod invariant;
pub mod item;
mod lexer;
mod literals;
mod navigate;
mod parser;
mod strings;
mod types;
mod xhtml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

pub use error::FhirPathError;
pub use invariant::{corrected_r4_expression, Invariant};
pub use item::{FhirType, Item, ItemType, ItemValue, SystemType};
pub use parser::MAX_DEPTH;

use ast::Expr;
use eval::{Env, Focus};

/// A compiled FHIRPath expression. Compiling is the costly part; evaluation never re-parses.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    root: Expr,
}

/// Parses an expression, resolving function names, type names and environment variables.
pub fn compile(expression: &str) -> Result<Expression, FhirPathError> {
    Ok(Expression { source: expression.to_string(), root: parser::parse(expression)? })
}

impl Expression {
    /// The text the expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression with the resource as `%resource`, `%rootResource`, `%context`
    /// and `$this`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Result<Vec<Item<'a>>, FhirPathError> {
        self.evaluate_on(resource, &Item::resource(resource))
    }

    /// Evaluates the expression on an item of the resource (`$this`, `%context`), e.g. a
    /// composite parameter's component expression on each value of the composite's
    /// expression; `%resource` is still the resource.
    pub fn evaluate_on<'a>(&self, resource: &'a Value, context: &Item<'a>) -> Result<Vec<Item<'a>>, FhirPathError> {
        self.evaluate_in(resource, resource, context)
    }

    /// Evaluates the expression on an item (`$this`, `%context`) of `resource` (`%resource`),
    /// which is contained in `root_resource` (`%rootResource`, also what contained references
    /// resolve against). For a resource that is not contained, both are the same.
    pub fn evaluate_in<'a>(
        &self,
        root_resource: &'a Value,
        resource: &'a Value,
        context: &Item<'a>,
    ) -> Result<Vec<Item<'a>>, FhirPathError> {
        let env = Env {
            root_resource: Item::resource(root_resource),
            resource: Item::resource(resource),
            context: context.clone(),
        };
        eval::eval(&self.root, &env, Focus { this: context, index: None })
    }
}

impl FromStr for Expression {
    type Err = FhirPathError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        compile(expression)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
