//! Turns expression text into tokens.
//!
//! Keywords (`and`, `div`, `is`, `true`, ...) come out as plain identifiers: whether `contains` is
//! an operator or a function name depends on where it stands, which only the parser knows.

use std::fmt;

use super::error::FhirPathError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
    /// A plain identifier or keyword.
    Identifier(String),
    /// A `` `backquoted` `` identifier: never a keyword.
    Delimited(String),
    /// A `'quoted'` string, escapes resolved.
    String(String),
    /// `12`, `3.14`, as written.
    Number(String),
    /// `@2020-01-02T10:00Z`, `@2020`: the text after `@`, with a `T` separator kept.
    DateTime(String),
    /// `@T10:00`: the text after `@T`.
    Time(String),
    /// `%name`, `` %`name` `` or `%'name'`.
    Variable(String),
    /// `$this`, `$index`, `$total`: the name after `$`.
    Special(String),
    Symbol(Symbol),
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Symbol {
    Dot,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    OpenBrace,
    CloseBrace,
    Plus,
    Minus,
    Star,
    Slash,
    Ampersand,
    Pipe,
    Equal,
    NotEqual,
    Tilde,
    NotTilde,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

/// A token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spanned {
    pub token: Token,
    pub position: usize,
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Spanned>, FhirPathError> {
    let mut lexer = Lexer { text, bytes: text.as_bytes(), position: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_trivia()?;
        let position = lexer.position;
        let token = lexer.next_token()?;
        let end = token == Token::End;
        tokens.push(Spanned { token, position });
        if end {
            return Ok(tokens);
        }
    }
}

struct Lexer<'t> {
    text: &'t str,
    bytes: &'t [u8],
    position: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.position + ahead).copied()
    }

    fn error(&self, position: usize, message: impl Into<String>) -> FhirPathError {
        FhirPathError::Syntax { position, message: message.into() }
    }

    fn skip_trivia(&mut self) -> Result<(), FhirPathError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(b), _) if b.is_ascii_whitespace() => self.position += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.position += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.position;
                    match self.text[self.position + 2..].find("*/") {
                        Some(end) => self.position += 2 + end + 2,
                        None => return Err(self.error(start, "unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        let Some(byte) = self.peek() else {
            return Ok(Token::End);
        };
        if byte.is_ascii_alphabetic() || byte == b'_' {
            return Ok(Token::Identifier(self.word().to_string()));
        }
        if byte.is_ascii_digit() {
            return Ok(Token::Number(self.number()));
        }
        match byte {
            b'`' => return Ok(Token::Delimited(self.quoted(b'`')?)),
            b'\'' => return Ok(Token::String(self.quoted(b'\'')?)),
            b'@' => return self.date_time(),
            b'%' => {
                self.position += 1;
                return match self.peek() {
                    Some(b'`') => Ok(Token::Variable(self.quoted(b'`')?)),
                    Some(b'\'') => Ok(Token::Variable(self.quoted(b'\'')?)),
                    Some(b) if b.is_ascii_alphabetic() || b == b'_' => Ok(Token::Variable(self.word().to_string())),
                    _ => Err(self.error(start, "expected a name after %")),
                };
            }
            b'$' => {
                self.position += 1;
                let name = self.word();
                if name.is_empty() {
                    return Err(self.error(start, "expected a name after $"));
                }
                return Ok(Token::Special(name.to_string()));
            }
            _ => {}
        }
        let two = (byte, self.peek_at(1));
        let (symbol, length) = match two {
            (b'!', Some(b'=')) => (Symbol::NotEqual, 2),
            (b'!', Some(b'~')) => (Symbol::NotTilde, 2),
            (b'<', Some(b'=')) => (Symbol::LessEqual, 2),
            (b'>', Some(b'=')) => (Symbol::GreaterEqual, 2),
            (b'.', _) => (Symbol::Dot, 1),
            (b',', _) => (Symbol::Comma, 1),
            (b'(', _) => (Symbol::OpenParen, 1),
            (b')', _) => (Symbol::CloseParen, 1),
            (b'[', _) => (Symbol::OpenBracket, 1),
            (b']', _) => (Symbol::CloseBracket, 1),
            (b'{', _) => (Symbol::OpenBrace, 1),
            (b'}', _) => (Symbol::CloseBrace, 1),
            (b'+', _) => (Symbol::Plus, 1),
            (b'-', _) => (Symbol::Minus, 1),
            (b'*', _) => (Symbol::Star, 1),
            (b'/', _) => (Symbol::Slash, 1),
            (b'&', _) => (Symbol::Ampersand, 1),
            (b'|', _) => (Symbol::Pipe, 1),
            (b'=', _) => (Symbol::Equal, 1),
            (b'~', _) => (Symbol::Tilde, 1),
            (b'<', _) => (Symbol::Less, 1),
            (b'>', _) => (Symbol::Greater, 1),
            _ => {
                let character = self.text[start..].chars().next().unwrap_or('?');
                return Err(self.error(start, format!("unexpected character {character:?}")));
            }
        };
        self.position += length;
        Ok(Token::Symbol(symbol))
    }

    fn word(&mut self) -> &str {
        let start = self.position;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.position += 1;
        }
        &self.text[start..self.position]
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
        }
    }

    fn number(&mut self) -> String {
        let start = self.position;
        self.digits();
        // `1.5` is a decimal, but in `1.toString()` the dot is an invocation.
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
            self.digits();
        }
        self.text[start..self.position].to_string()
    }

    /// A `'string'`, `` `identifier` `` or quoted variable name, with FHIRPath escapes.
    fn quoted(&mut self, quote: u8) -> Result<String, FhirPathError> {
        let start = self.position;
        self.position += 1;
        let mut value = String::new();
        loop {
            let rest = &self.text[self.position..];
            let mut chars = rest.chars();
            let Some(c) = chars.next() else {
                return Err(self.error(start, "unterminated quoted text"));
            };
            self.position += c.len_utf8();
            if c as u32 == quote as u32 {
                return Ok(value);
            }
            if c != '\\' {
                value.push(c);
                continue;
            }
            let Some(escaped) = chars.next() else {
                return Err(self.error(start, "unterminated quoted text"));
            };
            self.position += escaped.len_utf8();
            match escaped {
                '\'' | '"' | '`' | '\\' | '/' => value.push(escaped),
                'f' => value.push('\u{0c}'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'u' => {
                    let hex = self.text.get(self.position..self.position + 4).unwrap_or("");
                    let code = u32::from_str_radix(hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                        .ok_or_else(|| self.error(self.position, "\\u needs four hex digits"))?;
                    // A lone surrogate cannot be a Rust char; the replacement keeps the text usable.
                    value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    self.position += 4;
                }
                other => return Err(self.error(self.position - 1, format!("unknown escape \\{other}"))),
            }
        }
    }

    /// `@` date (`YYYY[-MM[-DD]]`), optionally `T` time and zone; or `@T` time.
    fn date_time(&mut self) -> Result<Token, FhirPathError> {
        let start = self.position;
        self.position += 1;
        if self.peek() == Some(b'T') {
            self.position += 1;
            let time_start = self.position;
            self.clock();
            if self.position == time_start {
                return Err(self.error(start, "expected a time after @T"));
            }
            return Ok(Token::Time(self.text[time_start..self.position].to_string()));
        }
        let date_start = self.position;
        if !self.fixed_digits(4) {
            return Err(self.error(start, "expected a date after @"));
        }
        for _ in 0..2 {
            if self.peek() == Some(b'-') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
                self.position += 1;
                if !self.fixed_digits(2) {
                    return Err(self.error(start, "malformed date literal"));
                }
            } else {
                break;
            }
        }
        if self.peek() == Some(b'T') {
            self.position += 1;
            self.clock();
            self.zone();
        }
        Ok(Token::DateTime(self.text[date_start..self.position].to_string()))
    }

    fn fixed_digits(&mut self, count: usize) -> bool {
        let ok = (0..count).all(|i| self.peek_at(i).is_some_and(|b| b.is_ascii_digit()));
        if ok {
            self.position += count;
        }
        ok
    }

    /// `HH[:MM[:SS[.fff]]]`, as much as is there.
    fn clock(&mut self) {
        if !self.fixed_digits(2) {
            return;
        }
        for _ in 0..2 {
            if self.peek() == Some(b':') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
                self.position += 1;
                if !self.fixed_digits(2) {
                    return;
                }
            } else {
                return;
            }
        }
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
            self.digits();
        }
    }

    fn zone(&mut self) {
        match self.peek() {
            Some(b'Z') => self.position += 1,
            Some(b'+' | b'-') => {
                let digit = |i: usize| self.peek_at(i).is_some_and(|b| b.is_ascii_digit());
                if digit(1) && digit(2) && self.peek_at(3) == Some(b':') && digit(4) && digit(5) {
                    self.position += 6;
                }
            }
            _ => {}
        }
    }
}

impl fmt::Display for Token {
    /// How a token is named in syntax errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Token::Identifier(name) => format!("'{name}'"),
            Token::Delimited(name) => format!("`{name}`"),
            Token::String(_) => "a string".into(),
            Token::Number(text) => format!("number {text}"),
            Token::DateTime(text) => format!("@{text}"),
            Token::Time(text) => format!("@T{text}"),
            Token::Variable(name) => format!("%{name}"),
            Token::Special(name) => format!("${name}"),
            Token::End => "end of expression".into(),
            Token::Symbol(symbol) => {
                let text = match symbol {
                    Symbol::Dot => ".",
                    Symbol::Comma => ",",
                    Symbol::OpenParen => "(",
                    Symbol::CloseParen => ")",
                    Symbol::OpenBracket => "[",
                    Symbol::CloseBracket => "]",
                    Symbol::OpenBrace => "{",
                    Symbol::CloseBrace => "}",
                    Symbol::Plus => "+",
                    Symbol::Minus => "-",
                    Symbol::Star => "*",
                    Symbol::Slash => "/",
                    Symbol::Ampersand => "&",
                    Symbol::Pipe => "|",
                    Symbol::Equal => "=",
                    Symbol::NotEqual => "!=",
                    Symbol::Tilde => "~",
                    Symbol::NotTilde => "!~",
                    Symbol::Less => "<",
                    Symbol::LessEqual => "<=",
                    Symbol::Greater => ">",
                    Symbol::GreaterEqual => ">=",
                };
                format!("'{text}'")
            }
        };
        f.write_str(&text)
    }
}
