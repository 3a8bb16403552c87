//! Tokens to syntax tree, by precedence climbing over the operator table of FHIRPath N1
//! (loosest first): `implies` (right-associative); `or` `xor`; `and`; `in` `contains`;
//! `=` `~` `!=` `!~`; `<` `<=` `>` `>=`; `|`; `is` `as`; `+` `-` `&`; `*` `/` `div` `mod`;
//! unary `+` `-`; then `.` and `[]`.
//!
//! Names are resolved here, so a compiled expression never fails on an unknown function, type
//! or variable at evaluation time. The depth of the tree is bounded ([`MAX_DEPTH`]) because the
//! evaluator recurses over it.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::ast::{BinaryOp, Call, Expr, Function, Literal, Name, TypeOp, UNSUPPORTED_FUNCTIONS};
use super::error::FhirPathError;
use super::lexer::{tokenize, Spanned, Symbol, Token};
use super::literals::{date_time_literal, is_calendar_unit, time_literal, variable};
use super::types::{self, TypeSpec};

/// How deep expressions may nest (parentheses, operators, path steps); deeper ones do not compile.
pub const MAX_DEPTH: usize = 64;

/// How deep the parser itself may recurse: parentheses and unary operators cost parser frames
/// (two per level) but add no depth to the tree.
const NESTING_LIMIT: usize = 2 * MAX_DEPTH + 16;

/// Largest compiled size of a regex literal, to bound the memory a hostile pattern can take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn parse(text: &str) -> Result<Expr, FhirPathError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, index: 0, nesting: 0 };
    let node = parser.expression(0)?;
    match parser.peek() {
        Token::End => Ok(node.expr),
        other => Err(parser.syntax(format!("unexpected {}", other))),
    }
}

/// A subtree and its depth.
struct Node {
    expr: Expr,
    depth: usize,
}

fn node(expr: Expr, depth: usize) -> Result<Node, FhirPathError> {
    if depth > MAX_DEPTH {
        return Err(FhirPathError::TooDeep { limit: MAX_DEPTH });
    }
    Ok(Node { expr, depth })
}

enum Infix {
    Binary(BinaryOp),
    Type(TypeOp),
}

struct Parser {
    tokens: Vec<Spanned>,
    index: usize,
    /// Current recursion depth of the parser itself (parentheses and unary operators add none to
    /// the tree but do to the stack).
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens.get(self.index + ahead).map_or(&Token::End, |t| &t.token)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.index).or_else(|| self.tokens.last()).map_or(0, |t| t.position)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.index < self.tokens.len() {
            self.index += 1;
        }
        token
    }

    fn syntax(&self, message: String) -> FhirPathError {
        FhirPathError::Syntax { position: self.position(), message }
    }

    fn expect(&mut self, symbol: Symbol) -> Result<(), FhirPathError> {
        if *self.peek() == Token::Symbol(symbol) {
            self.advance();
            Ok(())
        } else {
            Err(self.syntax(format!("expected {}, found {}", Token::Symbol(symbol), self.peek())))
        }
    }

    fn enter(&mut self) -> Result<(), FhirPathError> {
        self.nesting += 1;
        if self.nesting > NESTING_LIMIT {
            return Err(FhirPathError::TooDeep { limit: MAX_DEPTH });
        }
        Ok(())
    }

    fn expression(&mut self, min_precedence: u8) -> Result<Node, FhirPathError> {
        self.enter()?;
        let result = self.expression_inner(min_precedence);
        self.nesting -= 1;
        result
    }

    fn expression_inner(&mut self, min_precedence: u8) -> Result<Node, FhirPathError> {
        let mut left = self.prefix()?;
        while let Some((infix, precedence)) = self.infix() {
            if precedence < min_precedence {
                break;
            }
            self.advance();
            left = match infix {
                Infix::Type(op) => {
                    let spec = self.type_specifier()?;
                    node(Expr::Type(op, Box::new(left.expr), spec), left.depth + 1)?
                }
                Infix::Binary(op) => {
                    let next = if op == BinaryOp::Implies { precedence } else { precedence + 1 };
                    let right = self.expression(next)?;
                    match (op, left.expr) {
                        (BinaryOp::Union, Expr::Union(mut terms)) => {
                            terms.push(right.expr);
                            node(Expr::Union(terms), left.depth.max(right.depth + 1))?
                        }
                        (BinaryOp::Union, left_expr) => {
                            node(Expr::Union(vec![left_expr, right.expr]), left.depth.max(right.depth) + 1)?
                        }
                        (op, left_expr) => {
                            let depth = left.depth.max(right.depth) + 1;
                            node(Expr::Binary(op, Box::new(left_expr), Box::new(right.expr)), depth)?
                        }
                    }
                }
            };
        }
        Ok(left)
    }

    fn infix(&self) -> Option<(Infix, u8)> {
        let binary = |op, precedence| Some((Infix::Binary(op), precedence));
        match self.peek() {
            Token::Symbol(symbol) => match symbol {
                Symbol::Star => binary(BinaryOp::Multiply, 10),
                Symbol::Slash => binary(BinaryOp::Divide, 10),
                Symbol::Plus => binary(BinaryOp::Add, 9),
                Symbol::Minus => binary(BinaryOp::Subtract, 9),
                Symbol::Ampersand => binary(BinaryOp::Concatenate, 9),
                Symbol::Pipe => binary(BinaryOp::Union, 7),
                Symbol::Less => binary(BinaryOp::Less, 6),
                Symbol::LessEqual => binary(BinaryOp::LessOrEqual, 6),
                Symbol::Greater => binary(BinaryOp::Greater, 6),
                Symbol::GreaterEqual => binary(BinaryOp::GreaterOrEqual, 6),
                Symbol::Equal => binary(BinaryOp::Equal, 5),
                Symbol::NotEqual => binary(BinaryOp::NotEqual, 5),
                Symbol::Tilde => binary(BinaryOp::Equivalent, 5),
                Symbol::NotTilde => binary(BinaryOp::NotEquivalent, 5),
                _ => None,
            },
            Token::Identifier(word) => match word.as_str() {
                "div" => binary(BinaryOp::IntegerDivide, 10),
                "mod" => binary(BinaryOp::Modulo, 10),
                "is" => Some((Infix::Type(TypeOp::Is), 8)),
                "as" => Some((Infix::Type(TypeOp::As), 8)),
                "in" => binary(BinaryOp::In, 4),
                "contains" => binary(BinaryOp::Contains, 4),
                "and" => binary(BinaryOp::And, 3),
                "or" => binary(BinaryOp::Or, 2),
                "xor" => binary(BinaryOp::Xor, 2),
                "implies" => binary(BinaryOp::Implies, 1),
                _ => None,
            },
            _ => None,
        }
    }

    /// Unary `+`/`-`, which bind looser than `.` and `[]`: `-a.b` is `-(a.b)`.
    fn prefix(&mut self) -> Result<Node, FhirPathError> {
        self.enter()?;
        let result = self.prefix_inner();
        self.nesting -= 1;
        result
    }

    fn prefix_inner(&mut self) -> Result<Node, FhirPathError> {
        match self.peek() {
            Token::Symbol(Symbol::Plus) => {
                self.advance();
                self.prefix()
            }
            Token::Symbol(Symbol::Minus) => {
                self.advance();
                let operand = self.prefix()?;
                let negated = match operand.expr {
                    Expr::Literal(Literal::Integer(value)) => Expr::Literal(Literal::Integer(-value)),
                    Expr::Literal(Literal::Decimal(value)) => Expr::Literal(Literal::Decimal(-value)),
                    Expr::Literal(Literal::Quantity(value, unit)) => Expr::Literal(Literal::Quantity(-value, unit)),
                    other => return node(Expr::Negate(Box::new(other)), operand.depth + 1),
                };
                node(negated, operand.depth)
            }
            _ => {
                let term = self.term()?;
                self.postfix(term)
            }
        }
    }

    fn postfix(&mut self, mut left: Node) -> Result<Node, FhirPathError> {
        loop {
            match self.peek() {
                Token::Symbol(Symbol::Dot) => {
                    self.advance();
                    let position = self.position();
                    let name = match self.advance() {
                        Token::Identifier(name) | Token::Delimited(name) => name,
                        other => {
                            return Err(FhirPathError::Syntax {
                                position,
                                message: format!("expected a name after '.', found {}", other),
                            })
                        }
                    };
                    left = if *self.peek() == Token::Symbol(Symbol::OpenParen) {
                        self.call(&name, left, position)?
                    } else {
                        node(Expr::Member(Box::new(left.expr), Name::new(&name)), left.depth + 1)?
                    };
                }
                Token::Symbol(Symbol::OpenBracket) => {
                    self.advance();
                    let index = self.expression(0)?;
                    self.expect(Symbol::CloseBracket)?;
                    let depth = left.depth.max(index.depth) + 1;
                    left = node(Expr::Indexer(Box::new(left.expr), Box::new(index.expr)), depth)?;
                }
                _ => return Ok(left),
            }
        }
    }

    fn term(&mut self) -> Result<Node, FhirPathError> {
        let position = self.position();
        let token = self.advance();
        let followed_by_paren = *self.peek() == Token::Symbol(Symbol::OpenParen);
        let expr = match token {
            Token::Identifier(name) | Token::Delimited(name) if followed_by_paren => {
                return self.call(&name, Node { expr: Expr::This, depth: 1 }, position);
            }
            Token::Identifier(word) if word == "true" => Expr::Literal(Literal::Boolean(true)),
            Token::Identifier(word) if word == "false" => Expr::Literal(Literal::Boolean(false)),
            Token::Identifier(name) | Token::Delimited(name) => Expr::Identifier(Name::new(&name)),
            Token::String(text) => Expr::Literal(Literal::String(text.into())),
            Token::Number(text) => self.number(&text, position)?,
            Token::DateTime(text) => date_time_literal(&text, position)?,
            Token::Time(text) => time_literal(&text, position)?,
            Token::Variable(name) => variable(&name, position)?,
            Token::Special(name) => match name.as_str() {
                "this" => Expr::This,
                "index" => Expr::Index,
                "total" => {
                    return Err(FhirPathError::UnsupportedFunction { name: "$total (aggregate)".into(), position })
                }
                _ => return Err(FhirPathError::Syntax { position, message: format!("unknown ${name}") }),
            },
            Token::Symbol(Symbol::OpenBrace) => {
                self.expect(Symbol::CloseBrace)?;
                Expr::Empty
            }
            Token::Symbol(Symbol::OpenParen) => {
                let inner = self.expression(0)?;
                self.expect(Symbol::CloseParen)?;
                return Ok(inner);
            }
            other => return Err(FhirPathError::Syntax { position, message: format!("unexpected {}", other) }),
        };
        node(expr, 1)
    }

    /// A number, and the unit that makes it a quantity (`4 'mg'`, `2 days`).
    fn number(&mut self, text: &str, position: usize) -> Result<Expr, FhirPathError> {
        let invalid = || FhirPathError::Syntax { position, message: format!("invalid number {text}") };
        let decimal: f64 = text.parse().map_err(|_| invalid())?;
        let unit: Option<Arc<str>> = match self.peek() {
            Token::String(unit) => Some(unit.as_str().into()),
            Token::Identifier(word) if is_calendar_unit(word) => Some(word.as_str().into()),
            _ => None,
        };
        if let Some(unit) = unit {
            self.advance();
            return Ok(Expr::Literal(Literal::Quantity(decimal, unit)));
        }
        if text.contains('.') {
            Ok(Expr::Literal(Literal::Decimal(decimal)))
        } else {
            text.parse().map(|i| Expr::Literal(Literal::Integer(i))).map_err(|_| invalid())
        }
    }

    /// The type after `is`/`as`: `Quantity`, `FHIR.Quantity`, `System.String`.
    fn type_specifier(&mut self) -> Result<TypeSpec, FhirPathError> {
        let position = self.position();
        let first = match self.advance() {
            Token::Identifier(name) | Token::Delimited(name) => name,
            other => {
                return Err(FhirPathError::Syntax { position, message: format!("expected a type, found {}", other) })
            }
        };
        // Only a namespace is followed by a dot: in `(x as Quantity).value` the dot is a path step.
        let qualified = if matches!(first.as_str(), "FHIR" | "System") && *self.peek() == Token::Symbol(Symbol::Dot) {
            match self.peek_at(1).clone() {
                Token::Identifier(second) | Token::Delimited(second) => {
                    self.advance();
                    self.advance();
                    vec![first, second]
                }
                _ => vec![first],
            }
        } else {
            vec![first]
        };
        resolve_type(&qualified, position)
    }

    fn call(&mut self, name: &str, target: Node, position: usize) -> Result<Node, FhirPathError> {
        self.expect(Symbol::OpenParen)?;
        let mut args = Vec::new();
        let mut depth = target.depth;
        if *self.peek() != Token::Symbol(Symbol::CloseParen) {
            loop {
                let arg = self.expression(0)?;
                depth = depth.max(arg.depth);
                args.push(arg.expr);
                if *self.peek() == Token::Symbol(Symbol::Comma) {
                    self.advance();
                } else {
                    break;
                }
            }
        }
        self.expect(Symbol::CloseParen)?;
        let target = Box::new(target.expr);
        let type_op = match name {
            "is" => Some(TypeOp::Is),
            "as" => Some(TypeOp::As),
            "ofType" => Some(TypeOp::OfType),
            _ => None,
        };
        if let Some(op) = type_op {
            let [arg] = args.as_slice() else {
                return Err(FhirPathError::Arity {
                    function: op_name(op),
                    expected: "1",
                    actual: args.len(),
                    position,
                });
            };
            let spec = type_argument(arg, position)?;
            return node(Expr::Type(op, target, spec), depth + 1);
        }
        let Some(function) = Function::from_name(name) else {
            return Err(if UNSUPPORTED_FUNCTIONS.contains(&name) {
                FhirPathError::UnsupportedFunction { name: name.to_string(), position }
            } else {
                FhirPathError::UnknownFunction { name: name.to_string(), position }
            });
        };
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (0, 0) => "no",
                (1, 1) => "1",
                (2, 2) => "2",
                (0, 1) => "0 or 1",
                (1, 2) => "1 or 2",
                _ => "2 or 3",
            };
            return Err(FhirPathError::Arity { function: function.name(), expected, actual: args.len(), position });
        }
        let regex = match (function, args.first()) {
            (Function::Matches | Function::ReplaceMatches, Some(Expr::Literal(Literal::String(pattern)))) => {
                Some(Arc::new(compile_regex(pattern).map_err(|message| FhirPathError::Syntax { position, message })?))
            }
            (Function::MatchesFull, Some(Expr::Literal(Literal::String(pattern)))) => Some(Arc::new(
                compile_regex(&full_match_pattern(pattern))
                    .map_err(|message| FhirPathError::Syntax { position, message })?,
            )),
            _ => None,
        };
        node(Expr::Call(target, Call { function, args, regex }), depth + 1)
    }
}

/// Compiles a `matches`/`replaceMatches` pattern with a bounded size, in the "single line" mode
/// FHIRPath asks for (`.` also matches a line break).
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dot_matches_new_line(true)
        .build()
        .map_err(|error| format!("invalid regular expression: {error}"))
}

/// The pattern of `matchesFull(pattern)`: it must match the whole string, not a part of it.
pub(crate) fn full_match_pattern(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn op_name(op: TypeOp) -> &'static str {
    match op {
        TypeOp::Is => "is",
        TypeOp::As => "as",
        TypeOp::OfType => "ofType",
    }
}

/// The argument of `is(T)`, `as(T)`, `ofType(T)`: parsed as a path, read as a type name.
fn type_argument(arg: &Expr, position: usize) -> Result<TypeSpec, FhirPathError> {
    let qualified: Vec<String> = match arg {
        Expr::Identifier(name) => vec![name.name.to_string()],
        Expr::Member(namespace, name) => match namespace.as_ref() {
            Expr::Identifier(namespace) => vec![namespace.name.to_string(), name.name.to_string()],
            _ => return Err(FhirPathError::Syntax { position, message: "expected a type name".into() }),
        },
        _ => return Err(FhirPathError::Syntax { position, message: "expected a type name".into() }),
    };
    resolve_type(&qualified, position)
}

fn resolve_type(qualified: &[String], position: usize) -> Result<TypeSpec, FhirPathError> {
    let parts: Vec<&str> = qualified.iter().map(String::as_str).collect();
    types::resolve(&parts).ok_or_else(|| FhirPathError::UnknownType { name: parts.join("."), position })
}
