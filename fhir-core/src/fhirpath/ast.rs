//! The syntax tree of a compiled expression, with names already resolved: functions are an enum
//! checked for arity, type specifiers are resolved types, environment variables are constants or
//! roots.

use std::sync::Arc;

use regex::Regex;

use super::types::TypeSpec;

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Literal(Literal),
    /// `{}`
    Empty,
    /// `$this`, and the input of a function called without a target.
    This,
    /// `$index` inside `where`, `select`, `all`, `exists`, `repeat`.
    Index,
    /// `%resource`: the resource the evaluation started from.
    Resource,
    /// `%rootResource`: the resource that contains `%resource` when that one is contained, else
    /// `%resource` itself.
    RootResource,
    /// `%context`: the item the evaluation started from.
    Context,
    /// An identifier that starts a path: a type name tests the focus (`Patient` in
    /// `Patient.name`, `Resource` in `Resource.id` give the focus if it is of that type, else
    /// nothing); any other name is the focus's child of that name (`id`).
    Identifier(Name),
    /// `target.name`
    Member(Box<Expr>, Name),
    /// `target[index]`
    Indexer(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Call),
    /// `target is T`, `target as T`, `target.ofType(T)` (and the function forms of `is`/`as`).
    Type(TypeOp, Box<Expr>, TypeSpec),
    Negate(Box<Expr>),
    /// `a | b | c`, flattened: union is associative, and a flat list keeps long unions (the R4
    /// `patient` parameter has 32 terms) from deepening the tree.
    Union(Vec<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

/// An element name, with the name of the `_name` sibling that holds a primitive's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Name {
    pub name: Box<str>,
    pub primitive_element: Box<str>,
    /// The R4 type of that name (`Patient`, `Resource`), if there is one: at the start of a
    /// path it then tests the focus's type instead of naming an element (R4 element names never
    /// start with a capital letter).
    pub type_name: Option<&'static str>,
}

impl Name {
    pub fn new(name: &str) -> Self {
        Name {
            name: name.into(),
            primitive_element: format!("_{name}").into(),
            type_name: match name.starts_with(|c: char| c.is_ascii_uppercase()) {
                true => crate::definitions::r4().type_def(name).map(|def| def.name.as_str()),
                false => None,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Boolean(bool),
    String(Arc<str>),
    Integer(i64),
    Decimal(f64),
    Date(Arc<str>),
    DateTime(Arc<str>),
    Time(Arc<str>),
    Quantity(f64, Arc<str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeOp {
    Is,
    /// `as`, operator and function: keeps the items of the type. The spec makes `as` on several
    /// items an error; R4 search parameters apply it to repeating elements
    /// (`useContext.value as Quantity`), so it filters like `ofType`.
    As,
    OfType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Multiply,
    Divide,
    IntegerDivide,
    Modulo,
    Add,
    Subtract,
    Concatenate,
    Union,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::IntegerDivide => "div",
            BinaryOp::Modulo => "mod",
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Concatenate => "&",
            BinaryOp::Union => "|",
            BinaryOp::Less => "<",
            BinaryOp::LessOrEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterOrEqual => ">=",
            BinaryOp::Equal => "=",
            BinaryOp::NotEqual => "!=",
            BinaryOp::Equivalent => "~",
            BinaryOp::NotEquivalent => "!~",
            BinaryOp::In => "in",
            BinaryOp::Contains => "contains",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
            BinaryOp::Implies => "implies",
        }
    }
}

/// A function call: the function, its argument expressions, and a regex compiled once when the
/// pattern argument of `matches`/`replaceMatches` is a literal.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub function: Function,
    pub args: Vec<Expr>,
    pub regex: Option<Arc<Regex>>,
}

macro_rules! functions {
    ($($variant:ident = $name:literal, $min:literal ..= $max:literal;)*) => {
        /// The functions this engine implements.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Function {
            $($variant,)*
        }

        impl Function {
            pub fn from_name(name: &str) -> Option<Function> {
                match name {
                    $($name => Some(Function::$variant),)*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(Function::$variant => $name,)*
                }
            }

            /// The least and most arguments the function takes.
            pub fn arity(self) -> (usize, usize) {
                match self {
                    $(Function::$variant => ($min, $max),)*
                }
            }
        }
    };
}

functions! {
    Where = "where", 1..=1;
    Select = "select", 1..=1;
    Repeat = "repeat", 1..=1;
    All = "all", 1..=1;
    Exists = "exists", 0..=1;
    Empty = "empty", 0..=0;
    Not = "not", 0..=0;
    AllTrue = "allTrue", 0..=0;
    AnyTrue = "anyTrue", 0..=0;
    AllFalse = "allFalse", 0..=0;
    AnyFalse = "anyFalse", 0..=0;
    Count = "count", 0..=0;
    Distinct = "distinct", 0..=0;
    IsDistinct = "isDistinct", 0..=0;
    HasValue = "hasValue", 0..=0;
    First = "first", 0..=0;
    Last = "last", 0..=0;
    Tail = "tail", 0..=0;
    Skip = "skip", 1..=1;
    Take = "take", 1..=1;
    Single = "single", 0..=0;
    Union = "union", 1..=1;
    Combine = "combine", 1..=1;
    Intersect = "intersect", 1..=1;
    Exclude = "exclude", 1..=1;
    SubsetOf = "subsetOf", 1..=1;
    SupersetOf = "supersetOf", 1..=1;
    Children = "children", 0..=0;
    Descendants = "descendants", 0..=0;
    Extension = "extension", 1..=1;
    HasExtension = "hasExtension", 1..=1;
    Resolve = "resolve", 0..=0;
    MemberOf = "memberOf", 1..=1;
    HtmlChecks = "htmlChecks", 0..=0;
    Iif = "iif", 2..=3;
    Trace = "trace", 1..=2;
    Today = "today", 0..=0;
    Now = "now", 0..=0;
    Contains = "contains", 1..=1;
    StartsWith = "startsWith", 1..=1;
    EndsWith = "endsWith", 1..=1;
    Matches = "matches", 1..=1;
    MatchesFull = "matchesFull", 1..=1;
    ReplaceMatches = "replaceMatches", 2..=2;
    Replace = "replace", 2..=2;
    Substring = "substring", 1..=2;
    IndexOf = "indexOf", 1..=1;
    Lower = "lower", 0..=0;
    Upper = "upper", 0..=0;
    Length = "length", 0..=0;
    ToString = "toString", 0..=0;
    ToInteger = "toInteger", 0..=0;
    ToDecimal = "toDecimal", 0..=0;
    ToBoolean = "toBoolean", 0..=0;
    ToDate = "toDate", 0..=0;
    ToDateTime = "toDateTime", 0..=0;
    ToTime = "toTime", 0..=0;
    ToQuantity = "toQuantity", 0..=1;
    ConvertsToString = "convertsToString", 0..=0;
    ConvertsToInteger = "convertsToInteger", 0..=0;
    ConvertsToDecimal = "convertsToDecimal", 0..=0;
    ConvertsToBoolean = "convertsToBoolean", 0..=0;
    ConvertsToDate = "convertsToDate", 0..=0;
    ConvertsToDateTime = "convertsToDateTime", 0..=0;
    ConvertsToTime = "convertsToTime", 0..=0;
    ConvertsToQuantity = "convertsToQuantity", 0..=1;
}

/// Functions of FHIRPath N1 (and the FHIR additions) that this engine does not implement, so
/// that they are reported as unsupported rather than unknown.
pub(crate) const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "aggregate",
    "toChars",
    "abs",
    "ceiling",
    "exp",
    "floor",
    "ln",
    "log",
    "power",
    "round",
    "sqrt",
    "truncate",
    "timeOfDay",
    "conformsTo",
    "elementDefinition",
    "slice",
    "checkModifiers",
    "subsumes",
    "subsumedBy",
    "getValue",
];
