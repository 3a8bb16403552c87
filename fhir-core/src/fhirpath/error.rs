//! The one error type of the FHIRPath engine, for both compiling and evaluating.

/// Why an expression could not be compiled or evaluated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FhirPathError {
    /// The text is not a FHIRPath expression; `position` is a byte offset into it.
    #[error("FHIRPath syntax error at offset {position}: {message}")]
    Syntax { position: usize, message: String },
    /// A function that is not part of FHIRPath N1.
    #[error("unknown FHIRPath function {name}() at offset {position}")]
    UnknownFunction { name: String, position: usize },
    /// A function of the specification that this engine does not implement.
    #[error("FHIRPath function {name}() is not supported (offset {position})")]
    UnsupportedFunction { name: String, position: usize },
    #[error("{function}() takes {expected} argument(s), got {actual} (offset {position})")]
    Arity { function: &'static str, expected: &'static str, actual: usize, position: usize },
    /// A type specifier that names neither an R4 type nor a System type.
    #[error("unknown type {name} at offset {position}")]
    UnknownType { name: String, position: usize },
    #[error("unknown environment variable %{name} at offset {position}")]
    UnknownVariable { name: String, position: usize },
    /// The expression nests deeper than the evaluator is willing to recurse.
    #[error("FHIRPath expression nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// An operator or function that needs at most one item got more.
    #[error("{operation} expects a single item, got {count}")]
    NotSingleton { operation: &'static str, count: usize },
    /// An operand of the wrong type, e.g. `'a' < 1` or `substring('x')`.
    #[error("{operation}: {message}")]
    InvalidOperand { operation: &'static str, message: String },
    /// A collection grew beyond what one evaluation may build (`repeat` over computed values).
    #[error("FHIRPath evaluation produced more than {limit} items")]
    TooManyItems { limit: usize },
}
