//! Profiles: a StructureDefinition read into a tree of element constraints ([`model`]), and
//! validation against it (`validate`, with `slicing` and `invariants`).

mod invariants;
pub mod model;
mod slicing;
mod validate;

pub use model::Profile;
pub(crate) use validate::{validate, Scope};
