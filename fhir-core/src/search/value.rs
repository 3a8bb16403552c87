//! Typed search values: what one comma-separated value of a search parameter means, by the
//! parameter's type (prefixes, numbers with their precision, dates as ranges, tokens, references,
//! quantities, URIs and composites).

use time::OffsetDateTime;

use super::escape::{split_unescaped, unescape};
use crate::definitions::SearchParamType;
use crate::instant;

/// The comparison prefixes of number, date and quantity values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading prefix off `text` (default `eq`).
    pub fn split(text: &str) -> (Prefix, &str) {
        let prefixes = [
            ("eq", Prefix::Eq),
            ("ne", Prefix::Ne),
            ("gt", Prefix::Gt),
            ("lt", Prefix::Lt),
            ("ge", Prefix::Ge),
            ("le", Prefix::Le),
            ("sa", Prefix::Sa),
            ("eb", Prefix::Eb),
            ("ap", Prefix::Ap),
        ];
        for (name, prefix) in prefixes {
            if let Some(rest) = text.strip_prefix(name) {
                if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
                    return (prefix, rest);
                }
            }
        }
        (Prefix::Eq, text)
    }
}

/// A decimal as written, with the range its precision implies: `100` is `[99.5, 100.5)`,
/// `1.50` is `[1.495, 1.505)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decimal {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
            None => (text, 0),
        };
        let digits = mantissa.trim_start_matches(['-', '+']);
        let valid = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.bytes().filter(|b| *b == b'.').count() <= 1
            && digits.bytes().any(|b| b.is_ascii_digit());
        if !valid {
            return None;
        }
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        let decimals = digits.split_once('.').map_or(0, |(_, fraction)| fraction.len() as i32);
        let half_step = 0.5 * 10f64.powi(exponent - decimals);
        Some(Decimal { value, low: value - half_step, high: value + half_step })
    }
}

/// A reference value: `Patient/123`, `123`, `Patient/123/_history/2`, or an absolute URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceValue {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    /// The whole value when it is an absolute URL or a canonical (`url|version`).
    pub url: Option<String>,
}

/// One value of a search parameter, typed by the parameter's type and modifier.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchValue {
    Number { prefix: Prefix, number: Decimal },
    Date { prefix: Prefix, start: OffsetDateTime, end: OffsetDateTime },
    /// A string, or a token's `:text`, or a URI.
    Text(String),
    /// `system|code`: `system: None` means any system, `Some("")` means no system;
    /// `code: None` means any code in the system.
    Token { system: Option<String>, code: Option<String> },
    /// `:of-type`: an identifier's type (`system|code`) and value.
    OfType { system: String, code: String, value: String },
    Reference(ReferenceValue),
    Quantity { prefix: Prefix, number: Decimal, system: Option<String>, code: Option<String> },
    Composite(Vec<SearchValue>),
    /// `:missing=true|false`.
    Missing(bool),
}

/// Why a value could not be parsed; the caller names the parameter.
pub type ValueError = String;

/// Parses one value (already split from its OR siblings, still escaped) of a parameter of `kind`.
pub fn parse_value(kind: SearchParamType, raw: &str) -> Result<SearchValue, ValueError> {
    match kind {
        SearchParamType::Number => {
            let (prefix, rest) = Prefix::split(raw);
            let number = Decimal::parse(rest).ok_or("must be a number, optionally with a prefix such as gt")?;
            Ok(SearchValue::Number { prefix, number })
        }
        SearchParamType::Date => {
            let (prefix, rest) = Prefix::split(raw);
            // In a URL an unencoded '+' of a time-zone offset arrives as a space.
            let rest = rest.replace(' ', "+");
            let (start, end) = instant::parse_range(&rest).ok_or("must be a date, dateTime or instant, optionally with a prefix such as ge")?;
            Ok(SearchValue::Date { prefix, start, end })
        }
        SearchParamType::String | SearchParamType::Uri => {
            if raw.is_empty() {
                return Err("must not be empty".into());
            }
            Ok(SearchValue::Text(unescape(raw)))
        }
        SearchParamType::Token => parse_token(raw),
        SearchParamType::Reference => parse_reference(raw),
        SearchParamType::Quantity => parse_quantity(raw),
        SearchParamType::Composite | SearchParamType::Special => Err("is not a simple value".into()),
    }
}

pub fn parse_token(raw: &str) -> Result<SearchValue, ValueError> {
    let parts = split_unescaped(raw, '|');
    let non_empty = |text: &str| if text.is_empty() { None } else { Some(unescape(text)) };
    match parts.as_slice() {
        [code] if !code.is_empty() => Ok(SearchValue::Token { system: None, code: Some(unescape(code)) }),
        [system, code] if !(system.is_empty() && code.is_empty()) => {
            Ok(SearchValue::Token { system: Some(unescape(system)), code: non_empty(code) })
        }
        _ => Err("must be [system|]code".into()),
    }
}

pub fn parse_of_type(raw: &str) -> Result<SearchValue, ValueError> {
    match split_unescaped(raw, '|').as_slice() {
        [system, code, value] if !code.is_empty() && !value.is_empty() => {
            Ok(SearchValue::OfType { system: unescape(system), code: unescape(code), value: unescape(value) })
        }
        _ => Err("must be system|code|value for :of-type".into()),
    }
}

pub fn parse_reference(raw: &str) -> Result<SearchValue, ValueError> {
    let text = unescape(raw);
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.contains("://") || text.starts_with("urn:") {
        // A canonical may name a version: `http://example.org/Questionnaire/q|2.0`.
        if let Some((url, version)) = text.split_once('|') {
            let (resource_type, id) = match split_url_tail(url) {
                Some((resource_type, id, _)) => (Some(resource_type), Some(id)),
                None => (None, None),
            };
            let version = (!version.is_empty()).then(|| version.to_string());
            return Ok(SearchValue::Reference(ReferenceValue { resource_type, id, version, url: Some(url.to_string()) }));
        }
        let (resource_type, id, version) = match split_url_tail(&text) {
            Some((resource_type, id, version)) => (Some(resource_type), Some(id), version),
            None => (None, None, None),
        };
        return Ok(SearchValue::Reference(ReferenceValue { resource_type, id, version, url: Some(text) }));
    }
    let segments: Vec<&str> = text.split('/').collect();
    let reference = match segments.as_slice() {
        [id] => ReferenceValue { resource_type: None, id: Some((*id).to_string()), version: None, url: None },
        [resource_type, id] => ReferenceValue {
            resource_type: Some((*resource_type).to_string()),
            id: Some((*id).to_string()),
            version: None,
            url: None,
        },
        [resource_type, id, "_history", version] => ReferenceValue {
            resource_type: Some((*resource_type).to_string()),
            id: Some((*id).to_string()),
            version: Some((*version).to_string()),
            url: None,
        },
        _ => return Err("must be [type/]id, type/id/_history/version or an absolute URL".into()),
    };
    Ok(SearchValue::Reference(reference))
}

/// `.../Patient/123` or `.../Patient/123/_history/2` at the end of an absolute URL.
fn split_url_tail(url: &str) -> Option<(String, String, Option<String>)> {
    let segments: Vec<&str> = url.trim_end_matches('/').split('/').collect();
    let is_type = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric());
    match segments.as_slice() {
        [.., resource_type, id, "_history", version] if is_type(resource_type) => {
            Some(((*resource_type).into(), (*id).into(), Some((*version).into())))
        }
        [.., resource_type, id] if is_type(resource_type) => Some(((*resource_type).into(), (*id).into(), None)),
        _ => None,
    }
}

pub fn parse_quantity(raw: &str) -> Result<SearchValue, ValueError> {
    let parts = split_unescaped(raw, '|');
    let (number_text, system, code) = match parts.as_slice() {
        [number] => (*number, None, None),
        [number, system, code] => {
            let system = if system.is_empty() { None } else { Some(unescape(system)) };
            let code = if code.is_empty() { None } else { Some(unescape(code)) };
            (*number, system, code)
        }
        _ => return Err("must be [prefix]number[|system|code]".into()),
    };
    let (prefix, rest) = Prefix::split(number_text);
    let number = Decimal::parse(rest).ok_or("must start with a number, optionally with a prefix such as gt")?;
    Ok(SearchValue::Quantity { prefix, number, system, code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::split("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(Prefix::split("2020"), (Prefix::Eq, "2020"));
        assert_eq!(Prefix::split("ap-5"), (Prefix::Ap, "-5"));
        assert_eq!(Prefix::split("eb.5"), (Prefix::Eb, ".5"));
        // A token that merely starts with letters of a prefix is not split.
        assert_eq!(Prefix::split("next"), (Prefix::Eq, "next"));
    }

    #[test]
    fn decimals_carry_precision() {
        let d = Decimal::parse("100").unwrap();
        assert_eq!((d.low, d.high), (99.5, 100.5));
        let d = Decimal::parse("1.50").unwrap();
        assert!((d.low - 1.495).abs() < 1e-12 && (d.high - 1.505).abs() < 1e-12);
        let d = Decimal::parse("1e2").unwrap();
        assert_eq!((d.value, d.low, d.high), (100.0, 50.0, 150.0));
        for bad in ["", "abc", "1.2.3", "-", "1e", "NaN", "inf"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates_are_ranges() {
        let SearchValue::Date { prefix, start, end } = parse_value(SearchParamType::Date, "lt2020-02").unwrap() else { panic!() };
        assert_eq!(prefix, Prefix::Lt);
        assert_eq!(start, datetime!(2020-02-01 0:00 UTC));
        assert_eq!(end, datetime!(2020-03-01 0:00 UTC));
        // '+' decoded to a space in a query string is repaired.
        assert!(parse_value(SearchParamType::Date, "2020-02-01T10:00:00 02:00").is_ok());
        assert!(parse_value(SearchParamType::Date, "02/01/2020").is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_token("http://loinc.org|1234-5").unwrap(), SearchValue::Token { system: Some("http://loinc.org".into()), code: Some("1234-5".into()) });
        assert_eq!(parse_token("|x").unwrap(), SearchValue::Token { system: Some(String::new()), code: Some("x".into()) });
        assert_eq!(parse_token("sys|").unwrap(), SearchValue::Token { system: Some("sys".into()), code: None });
        assert_eq!(parse_token("a\\|b").unwrap(), SearchValue::Token { system: None, code: Some("a|b".into()) });
        assert!(parse_token("|").is_err());
        assert!(parse_token("a|b|c").is_err());
        assert!(parse_of_type("http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053").is_ok());
    }

    #[test]
    fn references() {
        let SearchValue::Reference(r) = parse_reference("Patient/123").unwrap() else { panic!() };
        assert_eq!((r.resource_type.as_deref(), r.id.as_deref()), (Some("Patient"), Some("123")));
        let SearchValue::Reference(r) = parse_reference("123").unwrap() else { panic!() };
        assert_eq!((r.resource_type, r.id.as_deref()), (None, Some("123")));
        let SearchValue::Reference(r) = parse_reference("Patient/1/_history/2").unwrap() else { panic!() };
        assert_eq!(r.version.as_deref(), Some("2"));
        let SearchValue::Reference(r) = parse_reference("http://example.org/fhir/Patient/9").unwrap() else { panic!() };
        assert_eq!((r.resource_type.as_deref(), r.id.as_deref()), (Some("Patient"), Some("9")));
        assert!(r.url.is_some());
        let SearchValue::Reference(r) = parse_reference("http://example.org/Questionnaire/q1|2.0").unwrap() else { panic!() };
        assert_eq!((r.url.as_deref(), r.version.as_deref()), (Some("http://example.org/Questionnaire/q1"), Some("2.0")));
        assert!(parse_reference("a/b/c").is_err());
    }

    #[test]
    fn quantities() {
        let SearchValue::Quantity { prefix, number, system, code } = parse_quantity("le5.4|http://unitsofmeasure.org|mg").unwrap() else { panic!() };
        assert_eq!(prefix, Prefix::Le);
        assert_eq!(number.value, 5.4);
        assert_eq!(system.as_deref(), Some("http://unitsofmeasure.org"));
        assert_eq!(code.as_deref(), Some("mg"));
        let SearchValue::Quantity { system, code, .. } = parse_quantity("5||mg").unwrap() else { panic!() };
        assert_eq!((system, code.as_deref()), (None, Some("mg")));
        assert!(parse_quantity("five").is_err());
        assert!(parse_quantity("5|mg").is_err());
    }
}
