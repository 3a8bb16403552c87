//! A StructureDefinition profile as a tree of element constraints.
//!
//! The elements come from the snapshot when there is one, else from the differential. Each
//! element's `id` (`Observation.component:systolic.code`) places it: a segment is a child
//! element, and `:name` after it a slice of that element. Elements the list skips are made
//! empty (no constraint), which is what a differential means.
//!
//! What a snapshot repeats from the R4 base (cardinalities equal to `base`, required bindings
//! of the base element, invariants whose `source` is the R4 specification) is left out: the
//! base validation already checks it, and would otherwise report it twice.

use serde_json::{Map, Value};

use fhir_core::definitions::{r4, Max};
use fhir_core::fhirpath;

/// The StructureDefinitions of the R4 specification; constraints from there are the base's.
const CORE_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";

/// One profile, ready to validate with.
#[derive(Debug)]
pub struct Profile {
    pub url: String,
    pub version: Option<String>,
    pub name: String,
    /// The constrained type: `Observation`, `Extension`, `Quantity`.
    pub type_name: String,
    /// Whether `type_name` is a resource type.
    pub is_resource: bool,
    pub base_definition: Option<String>,
    /// Whether the elements came from a snapshot (which already holds the base profile's).
    pub from_snapshot: bool,
    pub root: Node,
}

/// The constraints at one element, with its children and slices.
#[derive(Debug, Default)]
pub struct Node {
    pub element: Element,
    pub children: Vec<(String, Node)>,
    pub slices: Vec<(String, Node)>,
}

/// What an ElementDefinition says that validation uses. `mustSupport` is ignored.
#[derive(Debug, Default)]
pub struct Element {
    pub path: String,
    pub min: Option<u32>,
    pub max: Option<Max>,
    pub types: Vec<TypeRef>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    /// The ValueSet of a `required` binding.
    pub required_value_set: Option<String>,
    pub constraints: Vec<Constraint>,
    pub slicing: Option<Slicing>,
}

#[derive(Debug, Clone)]
pub struct TypeRef {
    pub code: String,
    pub profiles: Vec<String>,
    /// For references: the profiles (or types) of what they may point to.
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub key: String,
    pub error: bool,
    pub human: String,
    /// Compiled once, with the three R4 expressions that are wrong under FHIRPath's rules
    /// corrected; the compiler's complaint when it cannot be.
    pub invariant: Result<fhirpath::Invariant, String>,
}

#[derive(Debug, Clone)]
pub struct Slicing {
    pub discriminators: Vec<Discriminator>,
    pub closed: bool,
    /// The values must come in the order of the slices.
    pub ordered: bool,
}

#[derive(Debug, Clone)]
pub struct Discriminator {
    pub kind: String,
    pub path: String,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|(n, _)| n == name).map(|(_, node)| node)
    }

    fn child_mut(&mut self, name: &str) -> &mut Node {
        entry(&mut self.children, name)
    }

    fn slice_mut(&mut self, name: &str) -> &mut Node {
        entry(&mut self.slices, name)
    }

    /// This node and every node below it that is not inside one of their slices.
    pub fn unsliced(&self) -> Vec<&Node> {
        let mut nodes = vec![self];
        let mut index = 0;
        while index < nodes.len() {
            let node = nodes[index];
            nodes.extend(node.children.iter().map(|(_, child)| child));
            index += 1;
        }
        nodes
    }
}

/// The node named `name` in a list, added empty if missing.
fn entry<'n>(list: &'n mut Vec<(String, Node)>, name: &str) -> &'n mut Node {
    let index = match list.iter().position(|(n, _)| n == name) {
        Some(index) => index,
        None => {
            list.push((name.to_string(), Node::default()));
            list.len() - 1
        }
    };
    &mut list[index].1
}

/// Reads a StructureDefinition of `derivation: constraint`; the reason when it cannot be used.
pub fn parse(definition: &Value) -> Result<Profile, String> {
    let text = |key: &str| definition.get(key).and_then(Value::as_str).map(String::from);
    let url = text("url").ok_or("a StructureDefinition without url")?;
    let type_name = text("type").ok_or_else(|| format!("{url}: no type"))?;
    let snapshot = definition.pointer("/snapshot/element").and_then(Value::as_array);
    let (elements, from_snapshot) = match snapshot {
        Some(elements) => (elements, true),
        None => (definition.pointer("/differential/element").and_then(Value::as_array).ok_or_else(|| format!("{url}: neither snapshot nor differential"))?, false),
    };
    let mut root = Node::default();
    for element in elements {
        let element = element.as_object().ok_or_else(|| format!("{url}: an element is not an object"))?;
        let id = element_id(element).ok_or_else(|| format!("{url}: an element without id or path"))?;
        let mut segments = id.split('.');
        let first = segments.next().unwrap_or_default();
        if first.split(':').next() != Some(type_name.as_str()) {
            return Err(format!("{url}: element {id} is not in {type_name}"));
        }
        let mut node = &mut root;
        for segment in segments {
            let (name, slice) = match segment.split_once(':') {
                Some((name, slice)) => (name, Some(slice)),
                None => (segment, None),
            };
            node = node.child_mut(name);
            if let Some(slice) = slice {
                node = node.slice_mut(slice);
            }
        }
        node.element = read_element(element, &type_name, from_snapshot);
    }
    Ok(Profile {
        version: text("version"),
        name: text("name").unwrap_or_else(|| url.clone()),
        is_resource: r4().is_resource_type(&type_name),
        base_definition: text("baseDefinition"),
        from_snapshot,
        type_name,
        url,
        root,
    })
}

fn element_id(element: &Map<String, Value>) -> Option<String> {
    if let Some(id) = element.get("id").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    let path = element.get("path").and_then(Value::as_str)?;
    Some(match element.get("sliceName").and_then(Value::as_str) {
        Some(slice) => format!("{path}:{slice}"),
        None => path.to_string(),
    })
}

fn read_element(element: &Map<String, Value>, type_name: &str, from_snapshot: bool) -> Element {
    let path = element.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut min = element.get("min").and_then(Value::as_u64).map(|m| m as u32);
    let mut max = element.get("max").and_then(Value::as_str).and_then(parse_max);
    let is_slice = element.contains_key("sliceName");
    if from_snapshot && !is_slice {
        let base_min = element.get("base").and_then(|b| b.get("min")).and_then(Value::as_u64).map(|m| m as u32);
        let base_max = element.get("base").and_then(|b| b.get("max")).and_then(Value::as_str).and_then(parse_max);
        if min == base_min {
            min = None;
        }
        if max == base_max {
            max = None;
        }
    }
    let prefixed = |prefix: &str| element.iter().find(|(key, _)| key.starts_with(prefix) && key.len() > prefix.len()).map(|(_, value)| value.clone());
    Element {
        min,
        max,
        types: element.get("type").and_then(Value::as_array).into_iter().flatten().filter_map(type_ref).collect(),
        fixed: prefixed("fixed"),
        pattern: prefixed("pattern"),
        required_value_set: required_binding(element, type_name, &path, from_snapshot),
        constraints: element
            .get("constraint")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| !c.get("source").and_then(Value::as_str).is_some_and(|source| source.starts_with(CORE_PREFIX)))
            .filter_map(|c| constraint(c, &invariant_path(element, &path)))
            .collect(),
        slicing: element.get("slicing").map(slicing),
        path,
    }
}

fn parse_max(max: &str) -> Option<Max> {
    match max {
        "*" => Some(Max::Unbounded),
        n => n.parse().ok().map(Max::Bounded),
    }
}

fn type_ref(value: &Value) -> Option<TypeRef> {
    let code = value.get("code")?.as_str()?.to_string();
    let urls = |key: &str| value.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect();
    Some(TypeRef { code, profiles: urls("profile"), target_profiles: urls("targetProfile") })
}

/// The ValueSet of a required binding, unless a snapshot only repeats the R4 element's own.
fn required_binding(element: &Map<String, Value>, type_name: &str, path: &str, from_snapshot: bool) -> Option<String> {
    let binding = element.get("binding")?;
    if binding.get("strength").and_then(Value::as_str) != Some("required") {
        return None;
    }
    let value_set = binding.get("valueSet").and_then(Value::as_str)?;
    let value_set = crate::terminology::canonical(value_set).to_string();
    if from_snapshot {
        let relative = path.strip_prefix(type_name).unwrap_or(path).trim_start_matches('.');
        let base = (!relative.is_empty()).then(|| r4().element(type_name, relative)).flatten();
        if base.and_then(|b| b.element.binding.as_ref()).is_some_and(|b| b.value_set == value_set) {
            return None;
        }
    }
    Some(value_set)
}

/// The path an element's invariants are compiled for: the element path, or inside a slice the
/// path below the innermost slice, under a first step `Slice` (the invariant is then evaluated
/// on each value placed in that slice, see `invariants::evaluate_in_slice`).
fn invariant_path(element: &Map<String, Value>, path: &str) -> String {
    let id = element.get("id").and_then(Value::as_str).unwrap_or(path);
    let id_steps: Vec<&str> = id.split('.').collect();
    let path_steps: Vec<&str> = path.split('.').collect();
    match id_steps.iter().rposition(|step| step.contains(':')) {
        Some(slice) if id_steps.len() == path_steps.len() => std::iter::once("Slice").chain(path_steps[slice + 1..].iter().copied()).collect::<Vec<_>>().join("."),
        _ => path.to_string(),
    }
}

fn constraint(value: &Value, path: &str) -> Option<Constraint> {
    let key = value.get("key")?.as_str()?.to_string();
    let expression = fhirpath::corrected_r4_expression(&key, value.get("expression")?.as_str()?);
    Some(Constraint {
        invariant: fhirpath::Invariant::compile(path, expression).map_err(|e| e.to_string()),
        error: value.get("severity").and_then(Value::as_str) != Some("warning"),
        human: value.get("human").and_then(Value::as_str).unwrap_or_default().to_string(),
        key,
    })
}

fn slicing(value: &Value) -> Slicing {
    let discriminators = value
        .get("discriminator")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some(Discriminator { kind: d.get("type")?.as_str()?.to_string(), path: d.get("path")?.as_str()?.to_string() }))
        .collect();
    Slicing {
        discriminators,
        closed: value.get("rules").and_then(Value::as_str) == Some("closed"),
        ordered: value.get("ordered").and_then(Value::as_bool) == Some(true),
    }
}
