//! `htmlChecks()`: the FHIR narrative rules for an `xhtml` value (invariants txt-1 and txt-2 of
//! `Narrative.div`).
//!
//! What is checked, with a small XML scanner rather than a full XML parser:
//! - the text is well-formed: tags nest and close, attribute values are quoted, every `&` starts
//!   an entity or character reference, nothing but whitespace lies outside the root element;
//! - the root element is a `div` in the XHTML namespace;
//! - only the basic HTML formatting elements are used (the HTML 4.0 list the narrative rules
//!   allow: no `script`, `form`, `iframe`, `object`, `head`, `body`, `link`, `style`...), and no
//!   processing instruction or DOCTYPE;
//! - no event-handler attribute (`onclick`...) and no `javascript:` URL;
//! - there is some content: non-whitespace text or an image.
//!
//! Not checked: the attributes allowed on each element, entity names, and character-level XML
//! rules (which characters a name may contain).

use serde_json::Value;

use super::error::FhirPathError;
use super::eval::Collection;
use super::item::{Item, ItemValue};

const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// The elements a narrative may use: HTML 4.0 chapters 7-11 and 12 (less `ins`/`del` and
/// `link`), with images and image maps.
const ALLOWED_ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "area",
    "b",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "map",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// `htmlChecks()`: true or false for a single xhtml value, empty for anything else (FHIR's
/// definition of the function).
pub(crate) fn html_checks<'a>(input: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let [item] = input else {
        return Ok(Vec::new());
    };
    let text = match &item.value {
        ItemValue::Json(Value::String(text)) => text.as_str(),
        ItemValue::String(text) => text,
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Item::boolean(is_valid_narrative(text))])
}

/// Whether `text` is a narrative `div` that follows the rules above.
pub(crate) fn is_valid_narrative(text: &str) -> bool {
    let mut scanner = Scanner { text, position: 0 };
    scanner.narrative().is_some()
}

struct Scanner<'t> {
    text: &'t str,
    position: usize,
}

/// A start tag as scanned: its name, whether it closes itself, and the root's namespace.
struct StartTag<'t> {
    name: &'t str,
    self_closing: bool,
    namespace: Option<&'t str>,
}

impl<'t> Scanner<'t> {
    fn rest(&self) -> &'t str {
        &self.text[self.position..]
    }

    /// The whole value; `None` when a rule is broken.
    fn narrative(&mut self) -> Option<()> {
        self.skip_whitespace();
        let root = self.start_tag()?;
        if root.name != "div" || root.namespace != Some(XHTML_NAMESPACE) {
            return None;
        }
        let mut has_content = false;
        if !root.self_closing {
            let mut open = vec![root.name];
            while let Some(&current) = open.last() {
                let rest = self.rest();
                if rest.is_empty() {
                    return None;
                }
                if let Some(after) = rest.strip_prefix("</") {
                    let end = after.find('>')?;
                    if after[..end].trim_end() != current {
                        return None;
                    }
                    self.position += 2 + end + 1;
                    open.pop();
                } else if let Some(comment) = rest.strip_prefix("<!--") {
                    let end = comment.find("-->")?;
                    self.position += 4 + end + 3;
                } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
                    let end = after.find("]]>")?;
                    has_content |= !after[..end].trim().is_empty();
                    self.position += 9 + end + 3;
                } else if rest.starts_with('<') {
                    let tag = self.start_tag()?;
                    has_content |= tag.name == "img";
                    if !tag.self_closing {
                        open.push(tag.name);
                    }
                } else {
                    let end = rest.find('<').unwrap_or(rest.len());
                    let chunk = &rest[..end];
                    if !entities_are_well_formed(chunk) {
                        return None;
                    }
                    has_content |= !chunk.trim().is_empty();
                    self.position += end;
                }
            }
        }
        self.skip_whitespace();
        (self.rest().is_empty() && has_content).then_some(())
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
    }

    /// `<name attr="value" ...>` or `<name ... />`, at the current position; `None` for a tag
    /// that is malformed, of an element not allowed, or with a forbidden attribute.
    fn start_tag(&mut self) -> Option<StartTag<'t>> {
        let text = self.text;
        let rest = self.rest().strip_prefix('<')?;
        let name_length = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
        let name = &rest[..name_length];
        if !ALLOWED_ELEMENTS.contains(&name) {
            return None;
        }
        let mut position = self.position + 1 + name_length;
        let mut namespace = None;
        loop {
            let after = &text[position..];
            let trimmed = after.trim_start();
            let separated = trimmed.len() < after.len();
            position += after.len() - trimmed.len();
            if trimmed.starts_with("/>") {
                self.position = position + 2;
                return Some(StartTag { name, self_closing: true, namespace });
            }
            if trimmed.starts_with('>') {
                self.position = position + 1;
                return Some(StartTag { name, self_closing: false, namespace });
            }
            // An attribute: whitespace before it, then name, `=` and a quoted value.
            if !separated {
                return None;
            }
            let equals = trimmed.find('=')?;
            let attribute = trimmed[..equals].trim_end();
            if attribute.is_empty() || attribute.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
                return None;
            }
            let value_start = trimmed[equals + 1..].trim_start();
            let quote = value_start.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let value_length = value_start[1..].find(quote)?;
            let value = &value_start[1..1 + value_length];
            if value.contains('<') || !entities_are_well_formed(value) || !attribute_is_safe(attribute, value) {
                return None;
            }
            if attribute == "xmlns" {
                namespace = Some(value);
            }
            let consumed = trimmed.len() - value_start.len() + 1 + value_length + 1;
            position += consumed;
        }
    }
}

/// Event handlers run scripts, and so do `javascript:` URLs.
fn attribute_is_safe(name: &str, value: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("on") {
        return false;
    }
    !value.trim_start().to_ascii_lowercase().starts_with("javascript:")
}

/// Every `&` starts `&name;`, `&#digits;` or `&#xhex;`.
fn entities_are_well_formed(text: &str) -> bool {
    let mut rest = text;
    while let Some(index) = rest.find('&') {
        let after = &rest[index + 1..];
        let Some(end) = after.find(';') else {
            return false;
        };
        let reference = &after[..end];
        let valid = if let Some(hex) = reference.strip_prefix("#x") {
            !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
        } else if let Some(digits) = reference.strip_prefix('#') {
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        } else {
            reference.starts_with(|c: char| c.is_ascii_alphabetic())
                && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !valid {
            return false;
        }
        rest = &after[end + 1..];
    }
    true
}
