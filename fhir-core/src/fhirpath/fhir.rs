//! The FHIR additions to FHIRPath: `extension(url)`, `resolve()`, `memberOf(valueSet)` and
//! `htmlChecks()` (in `xhtml`).
//!
//! `resolve()` cannot fetch other resources. A reference to a contained resource (`#id`)
//! resolves to that resource; any other reference resolves to an
//! [`ItemValue::UnresolvedReference`] typed as the resource type the reference names
//! (`Patient/123`, `http://x/fhir/Patient/123/_history/2`, a canonical
//! `http://hl7.org/fhir/ValueSet/x`, else `Reference.type`), which is what search parameters
//! need for `where(resolve() is Patient)`.

use serde_json::Value;

use super::ast::Name;
use super::error::FhirPathError;
use super::eval::{invalid, singleton, Collection, Env};
use super::item::{Item, ItemType, ItemValue};
use super::navigate;
use crate::definitions::r4;

/// The extensions of the input items with that URL.
pub(crate) fn extension<'a>(input: &[Item<'a>], url: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let Some(url) = singleton(url, "extension")? else {
        return Ok(Vec::new());
    };
    let Some(url) = url.as_str() else {
        return Err(invalid("extension", "the url must be a string"));
    };
    let name = Name::new("extension");
    let mut extensions = Vec::new();
    for item in input {
        navigate::child(item, &name, &mut extensions);
    }
    extensions
        .retain(|extension| extension.json().and_then(|node| node.get("url")).and_then(Value::as_str) == Some(url));
    Ok(extensions)
}

pub(crate) fn resolve<'a>(input: Collection<'a>, env: &Env<'a>) -> Collection<'a> {
    let mut out = Vec::with_capacity(input.len());
    for item in input {
        match item.value {
            ItemValue::Json(node @ Value::Object(object)) => {
                let reference = object.get("reference").and_then(Value::as_str);
                if let Some(local) = reference.and_then(|r| r.strip_prefix('#')) {
                    // Contained resources live in the container, also for a reference made
                    // inside a contained resource; `#` alone is the container itself.
                    if local.is_empty() {
                        out.push(env.root_resource.clone());
                    } else if let Some(contained) = contained(&env.root_resource, local) {
                        out.push(contained);
                    }
                    continue;
                }
                let target = reference
                    .and_then(type_from_url)
                    .or_else(|| object.get("type").and_then(Value::as_str).and_then(type_from_name));
                out.push(Item::new(ItemValue::UnresolvedReference(node), target.unwrap_or(ItemType::Unknown)));
            }
            // canonical, uri, url elements (`relatedArtifact.resource`).
            ItemValue::Json(node @ Value::String(url)) => {
                let target = type_from_url(url).unwrap_or(ItemType::Unknown);
                out.push(Item::new(ItemValue::UnresolvedReference(node), target));
            }
            ItemValue::UnresolvedReference(_) => out.push(item),
            _ => {}
        }
    }
    out
}

fn contained<'a>(resource: &Item<'a>, id: &str) -> Option<Item<'a>> {
    let contained = resource.json()?.get("contained")?.as_array()?;
    contained.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id)).map(Item::resource)
}

fn type_from_name(name: &str) -> Option<ItemType> {
    Some(ItemType::of_resource_type(name)).filter(|t| *t != ItemType::Unknown)
}

/// The resource type a relative or absolute reference names: the last `Type/id` pair of its
/// path (before `_history`), ignoring a canonical's `|version` and any fragment.
fn type_from_url(url: &str) -> Option<ItemType> {
    let path = url.split(['|', '#', '?']).next().unwrap_or(url);
    let segments: Vec<&str> = path.split('/').collect();
    let definitions = r4();
    (0..segments.len().saturating_sub(1))
        .rev()
        .find(|&i| !segments[i + 1].is_empty() && definitions.is_resource_type(segments[i]))
        .and_then(|i| type_from_name(segments[i]))
}

/// `memberOf(url)` against the value sets the server knows (those of required bindings):
/// true/false for a code, Coding or CodeableConcept when the value set can be checked, empty
/// otherwise.
pub(crate) fn member_of<'a>(input: &[Item<'a>], url: &[Item<'a>]) -> Result<Collection<'a>, FhirPathError> {
    let (Some(item), Some(url)) = (singleton(input, "memberOf")?, singleton(url, "memberOf")?) else {
        return Ok(Vec::new());
    };
    let Some(url) = url.as_str() else {
        return Err(invalid("memberOf", "the value set must be a string"));
    };
    let definitions = r4();
    let Some(value_set) = definitions.value_set(url).filter(|vs| vs.is_checkable()) else {
        return Ok(Vec::new());
    };
    let in_coding = |coding: &Value| match (
        coding.get("system").and_then(Value::as_str),
        coding.get("code").and_then(Value::as_str),
    ) {
        (Some(system), Some(code)) => value_set.contains(system, code),
        (None, Some(code)) => value_set.contains_code(code),
        _ => false,
    };
    let member = match (item.as_str(), item.json()) {
        (Some(code), _) => value_set.contains_code(code),
        (None, Some(node)) => match node.get("coding").and_then(Value::as_array) {
            Some(codings) => codings.iter().any(in_coding),
            None => in_coding(node),
        },
        (None, None) => return Ok(Vec::new()),
    };
    Ok(vec![Item::boolean(member)])
}
