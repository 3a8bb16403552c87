//! Primitive values: JSON representation, the spec's format regexes, ranges and dates.
//!
//! The regexes are the ones in the R4 StructureDefinitions (the `regex` extension on each
//! primitive's `value`), compiled once. They are written in XML Schema dialect, where `\s` is
//! only space, tab, CR and LF, so those classes are rewritten before compiling: with Unicode
//! `\s`, a string holding a no-break space would not be a valid FHIR `string`, which the spec
//! does not intend.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::definitions::{r4, JsonType, Primitive};

/// Largest `string` / `markdown` value, in characters (the `maxLength` of R4's `string.value`).
const MAX_STRING_CHARS: usize = 1024 * 1024;

/// What is wrong with a primitive value. Never carries the value itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrimitiveProblem {
    WrongJsonType(JsonType),
    NotAnInteger,
    OutOfRange(&'static str),
    EmptyString,
    TooLong,
    Format,
    NoSuchDay,
    NotADiv,
}

impl PrimitiveProblem {
    pub(crate) fn describe(self, primitive: Primitive) -> String {
        let name = primitive.name();
        match self {
            PrimitiveProblem::WrongJsonType(JsonType::String) => format!("a {name} value must be a JSON string"),
            PrimitiveProblem::WrongJsonType(JsonType::Number) => format!("a {name} value must be a JSON number"),
            PrimitiveProblem::WrongJsonType(JsonType::Boolean) => {
                format!("a {name} value must be a JSON boolean (true or false)")
            }
            PrimitiveProblem::NotAnInteger => {
                format!("a {name} value must be a whole number, without fraction or exponent")
            }
            PrimitiveProblem::OutOfRange(range) => format!("{name} value is out of range ({range})"),
            PrimitiveProblem::EmptyString => format!("a {name} value must not be an empty string"),
            PrimitiveProblem::TooLong => format!("{name} value is longer than 1,048,576 characters"),
            PrimitiveProblem::Format => format!("value is not a valid {name} (it does not match the {name} regex)"),
            PrimitiveProblem::NoSuchDay => {
                format!("value is not a valid {name}: that day does not exist in that month")
            }
            PrimitiveProblem::NotADiv => format!("an {name} narrative must be a <div> element"),
        }
    }
}

struct Formats {
    regexes: Vec<(Primitive, Regex)>,
}

static FORMATS: LazyLock<Formats> = LazyLock::new(|| {
    let definitions = r4();
    let mut regexes = Vec::new();
    for primitive in Primitive::ALL {
        if !needs_regex(primitive) {
            continue;
        }
        if let Some(spec) = definitions.primitive_regex(primitive) {
            match Regex::new(&translate_xsd_regex(spec)) {
                Ok(regex) => regexes.push((primitive, regex)),
                // The regexes come from the bundled data file; a test compiles every one of them.
                Err(error) => panic!("the R4 regex of {} does not compile: {error}", primitive.name()),
            }
        }
    }
    Formats { regexes }
});

/// Primitives whose format is checked by their regex. The others are checked in code: numbers
/// and booleans by their JSON type, `string` and `markdown` (whose regex accepts any non-empty
/// string), `xhtml` (which has none), and the simple whitespace rules of the URI types and
/// `code`.
fn needs_regex(primitive: Primitive) -> bool {
    primitive.json_type() == JsonType::String
        && !matches!(
            primitive,
            Primitive::String
                | Primitive::Markdown
                | Primitive::Xhtml
                | Primitive::Uri
                | Primitive::Url
                | Primitive::Canonical
                | Primitive::Code
        )
}

fn regex_for(primitive: Primitive) -> Option<&'static Regex> {
    FORMATS.regexes.iter().find(|(p, _)| *p == primitive).map(|(_, r)| r)
}

/// Rewrites `\s` / `\S` to XML Schema's meaning and anchors the expression at both ends.
pub(crate) fn translate_xsd_regex(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len() + 32);
    out.push_str("^(?:");
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str("[ \\t\\n\\r]"),
            Some('S') => out.push_str("[^ \\t\\n\\r]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push_str("\\\\"),
        }
    }
    out.push_str(")$");
    out
}

/// Checks one primitive value (never null: the caller deals with that).
pub(crate) fn check(value: &Value, primitive: Primitive) -> Result<(), PrimitiveProblem> {
    match primitive.json_type() {
        JsonType::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(PrimitiveProblem::WrongJsonType(JsonType::Boolean)),
        },
        JsonType::Number => match value {
            Value::Number(number) => check_number(number, primitive),
            _ => Err(PrimitiveProblem::WrongJsonType(JsonType::Number)),
        },
        JsonType::String => match value {
            Value::String(text) => check_string(text, primitive),
            _ => Err(PrimitiveProblem::WrongJsonType(JsonType::String)),
        },
    }
}

fn check_number(number: &serde_json::Number, primitive: Primitive) -> Result<(), PrimitiveProblem> {
    let (low, range) = match primitive {
        Primitive::Decimal => return Ok(()),
        Primitive::Integer => (i64::from(i32::MIN), "-2,147,483,648 to 2,147,483,647"),
        Primitive::PositiveInt => (1, "1 to 2,147,483,647"),
        _ => (0, "0 to 2,147,483,647"),
    };
    if number.is_f64() {
        return Err(PrimitiveProblem::NotAnInteger);
    }
    match number.as_i64() {
        Some(n) if n >= low && n <= i64::from(i32::MAX) => Ok(()),
        _ => Err(PrimitiveProblem::OutOfRange(range)),
    }
}

fn check_string(text: &str, primitive: Primitive) -> Result<(), PrimitiveProblem> {
    if text.is_empty() {
        return Err(PrimitiveProblem::EmptyString);
    }
    match primitive {
        Primitive::String | Primitive::Markdown => {
            if text.len() > MAX_STRING_CHARS && text.chars().count() > MAX_STRING_CHARS {
                return Err(PrimitiveProblem::TooLong);
            }
            Ok(())
        }
        Primitive::Xhtml => {
            if text.trim_start().starts_with("<div") {
                Ok(())
            } else {
                Err(PrimitiveProblem::NotADiv)
            }
        }
        // `\S*` and `[^\s]+(\s[^\s]+)*`, the most frequent formats, checked without a regex
        // (`fast_paths_agree_with_the_spec_regexes` holds them to the regexes).
        Primitive::Uri | Primitive::Url | Primitive::Canonical => {
            if text.bytes().any(is_xsd_space) {
                Err(PrimitiveProblem::Format)
            } else {
                Ok(())
            }
        }
        Primitive::Code => {
            if is_code(text) {
                Ok(())
            } else {
                Err(PrimitiveProblem::Format)
            }
        }
        _ => {
            if let Some(regex) = regex_for(primitive) {
                if !regex.is_match(text) {
                    return Err(PrimitiveProblem::Format);
                }
            }
            if matches!(primitive, Primitive::Date | Primitive::DateTime | Primitive::Instant) && !day_exists(text) {
                return Err(PrimitiveProblem::NoSuchDay);
            }
            Ok(())
        }
    }
}

fn is_xsd_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// `[^\s]+(\s[^\s]+)*`: no whitespace at either end, and never two whitespace characters in a row.
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    !is_xsd_space(*first) && !is_xsd_space(*last) && !bytes.windows(2).any(|w| is_xsd_space(w[0]) && is_xsd_space(w[1]))
}

/// For a value that already matches a date regex: whether its day (if any) exists in its month.
fn day_exists(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 10 {
        return true;
    }
    let number = |range: std::ops::Range<usize>| -> u32 {
        bytes[range].iter().fold(0, |n, b| n * 10 + u32::from(b.wrapping_sub(b'0')))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(value: Value, primitive: Primitive) -> bool {
        check(&value, primitive).is_ok()
    }

    #[test]
    fn every_spec_regex_compiles() {
        for primitive in Primitive::ALL {
            if needs_regex(primitive) {
                assert!(regex_for(primitive).is_some(), "{} has no regex", primitive.name());
            }
        }
    }

    #[test]
    fn fast_paths_agree_with_the_spec_regexes() {
        let definitions = r4();
        let compile =
            |p: Primitive| Regex::new(&translate_xsd_regex(definitions.primitive_regex(p).unwrap_or_default())).ok();
        let samples = [
            "a",
            "ab",
            "a b",
            "a  b",
            " a",
            "a ",
            "a\tb",
            "a\t\nb",
            "a\u{a0}b",
            "http://x.org/a?b=c#d",
            "urn:uuid:1",
            "\r",
            "x\ry",
            "é ü",
            "a b c",
            "a b  c",
            "-",
            " ",
            "a\n",
        ];
        for primitive in [Primitive::Uri, Primitive::Url, Primitive::Canonical, Primitive::Code] {
            let regex = compile(primitive).expect("spec regex");
            for sample in samples {
                assert_eq!(
                    check_string(sample, primitive).is_ok(),
                    regex.is_match(sample),
                    "{} {sample:?}",
                    primitive.name()
                );
            }
        }
    }

    #[test]
    fn xml_schema_whitespace_classes() {
        assert_eq!(translate_xsd_regex(r"\S*"), r"^(?:[^ \t\n\r]*)$");
        // A no-break space is not XML Schema whitespace: a code may contain it.
        assert!(ok(json!("a\u{a0}b"), Primitive::Code));
        assert!(!ok(json!("a  b"), Primitive::Code));
        assert!(!ok(json!(" a"), Primitive::Code));
        assert!(ok(json!("a b"), Primitive::Code));
    }

    #[test]
    fn json_types() {
        assert!(ok(json!(true), Primitive::Boolean));
        assert_eq!(check(&json!("true"), Primitive::Boolean), Err(PrimitiveProblem::WrongJsonType(JsonType::Boolean)));
        assert_eq!(check(&json!("1"), Primitive::Integer), Err(PrimitiveProblem::WrongJsonType(JsonType::Number)));
        assert_eq!(check(&json!(1), Primitive::String), Err(PrimitiveProblem::WrongJsonType(JsonType::String)));
        assert_eq!(check(&json!({}), Primitive::Date), Err(PrimitiveProblem::WrongJsonType(JsonType::String)));
        assert!(ok(json!(1.5e3), Primitive::Decimal));
        assert!(ok(json!(-3), Primitive::Decimal));
    }

    #[test]
    fn integer_ranges() {
        assert!(ok(json!(2147483647), Primitive::Integer));
        assert!(ok(json!(-2147483648), Primitive::Integer));
        assert!(!ok(json!(2147483648u64), Primitive::Integer));
        assert!(!ok(json!(-2147483649i64), Primitive::Integer));
        assert_eq!(check(&json!(1.0), Primitive::Integer), Err(PrimitiveProblem::NotAnInteger));
        assert!(!ok(json!(0), Primitive::PositiveInt));
        assert!(ok(json!(1), Primitive::PositiveInt));
        assert!(ok(json!(0), Primitive::UnsignedInt));
        assert!(!ok(json!(-1), Primitive::UnsignedInt));
        assert!(!ok(json!(u64::MAX), Primitive::UnsignedInt));
    }

    #[test]
    fn dates_and_times() {
        for good in ["2019", "2019-02", "2019-02-28", "2020-02-29"] {
            assert!(ok(json!(good), Primitive::Date), "{good}");
        }
        for bad in ["2019-2", "19", "2019-13", "2019-02-29", "2019-04-31", "2019-02-28T10:00:00Z", "0000"] {
            assert!(!ok(json!(bad), Primitive::Date), "{bad}");
        }
        assert!(ok(json!("2015-02-07T13:28:17.239+02:00"), Primitive::DateTime));
        assert!(ok(json!("2015-02-07"), Primitive::DateTime));
        assert!(!ok(json!("2015-02-07T13:28"), Primitive::DateTime), "seconds are required");
        assert!(!ok(json!("2015-02-07T13:28:17"), Primitive::DateTime), "a time needs a zone");
        assert!(ok(json!("2015-02-07T13:28:17Z"), Primitive::Instant));
        assert!(!ok(json!("2015-02-07"), Primitive::Instant));
        assert!(!ok(json!("2015-02-30T13:28:17Z"), Primitive::Instant));
        assert!(ok(json!("13:28:17.5"), Primitive::Time));
        assert!(!ok(json!("24:00:00"), Primitive::Time));
    }

    #[test]
    fn identifiers_and_uris() {
        assert!(ok(json!("example-1.2"), Primitive::Id));
        assert!(!ok(json!("under_score"), Primitive::Id));
        assert!(!ok(json!("x".repeat(65)), Primitive::Id));
        assert!(ok(json!("urn:oid:1.2.840.10008"), Primitive::Oid));
        assert!(!ok(json!("1.2.840"), Primitive::Oid));
        assert!(ok(json!("urn:uuid:a76d9bbf-f293-4fb7-ad4c-2851cac77162"), Primitive::Uuid));
        assert!(!ok(json!("urn:uuid:A76D9BBF-F293-4FB7-AD4C-2851CAC77162"), Primitive::Uuid));
        assert!(ok(json!("http://example.org/a"), Primitive::Uri));
        assert!(!ok(json!("http://example.org/a b"), Primitive::Url));
        assert!(!ok(json!("a\tb"), Primitive::Canonical));
    }

    #[test]
    fn strings_and_binary() {
        assert_eq!(check(&json!(""), Primitive::String), Err(PrimitiveProblem::EmptyString));
        assert!(ok(json!("  spaces are fine  "), Primitive::String));
        assert!(ok(json!("# Title\n\ntext"), Primitive::Markdown));
        assert!(ok(json!("aGVsbG8="), Primitive::Base64Binary));
        assert!(ok(json!("aGVs bG8="), Primitive::Base64Binary));
        assert!(!ok(json!("aGVsbG8"), Primitive::Base64Binary));
        assert!(!ok(json!("aGV*bG8="), Primitive::Base64Binary));
        assert!(ok(json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"), Primitive::Xhtml));
        assert_eq!(check(&json!("<p>x</p>"), Primitive::Xhtml), Err(PrimitiveProblem::NotADiv));
        assert_eq!(check(&json!("a".repeat(MAX_STRING_CHARS + 1)), Primitive::String), Err(PrimitiveProblem::TooLong));
    }

    #[test]
    fn problems_never_quote_the_value() {
        let text = PrimitiveProblem::Format.describe(Primitive::Date);
        assert_eq!(text, "value is not a valid date (it does not match the date regex)");
    }
}
