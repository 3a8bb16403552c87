//! Builds the lookup structures of [`Definitions`] from the parsed data file.
//!
//! Two passes over the elements: the first files each element under the structure of its parent
//! path (creating one structure per resource, datatype and backbone element), the second resolves
//! each type code to what it leads to (a primitive, a structure, or a resource), now that every
//! structure exists.

use std::collections::HashMap;

use super::data::{DataFile, ElementRecord};
use super::fast_hash::FastMap;
use super::model::{
    Binding, ChildRef, ElementDef, ElementType, Max, Primitive, Structure, StructureId, TypeDef, TypeKind, TypeTarget,
};
use super::value_set::ValueSet;
use super::{Definitions, DefinitionsError};

pub(crate) fn build(data: DataFile) -> Result<Definitions, DefinitionsError> {
    let mut types: HashMap<String, TypeDef> = HashMap::with_capacity(data.types.len());
    for record in data.types {
        let kind = match record.kind.as_str() {
            "resource" => TypeKind::Resource,
            "complex-type" => TypeKind::ComplexType,
            "primitive-type" => TypeKind::PrimitiveType,
            other => return Err(invalid(format!("unknown type kind {other}"))),
        };
        types.insert(
            record.name.clone(),
            TypeDef { name: record.name, kind, is_abstract: record.is_abstract, base: record.base, structure: None },
        );
    }

    let mut primitive_regexes = HashMap::new();
    for record in data.primitives {
        let primitive = Primitive::from_name(&record.name)
            .ok_or_else(|| invalid(format!("unknown primitive type {}", record.name)))?;
        if let Some(regex) = record.regex {
            primitive_regexes.insert(primitive, regex);
        }
    }

    let (mut structures, structure_by_path, raw) = file_elements(&types, data.elements)?;
    resolve_types(&mut structures, &structure_by_path, &types, raw)?;
    for structure in &mut structures {
        index_children(structure);
    }
    for (name, def) in types.iter_mut() {
        def.structure = structure_by_path.get(name.as_str()).copied();
    }
    let element_structure =
        *structure_by_path.get("Element").ok_or_else(|| invalid("no structure for Element".into()))?;

    let mut resource_types: Vec<String> =
        types.values().filter(|t| t.kind == TypeKind::Resource && !t.is_abstract).map(|t| t.name.clone()).collect();
    resource_types.sort();

    let search_parameters = data.search_parameters;
    let mut search_by_type: HashMap<String, Vec<usize>> = HashMap::new();
    for resource_type in &resource_types {
        let is_domain_resource = types.get(resource_type).and_then(|t| t.base.as_deref()) == Some("DomainResource");
        let mut indexes: Vec<usize> = search_parameters
            .iter()
            .enumerate()
            .filter(|(_, sp)| sp.core && sp.applies_to(resource_type, is_domain_resource))
            .map(|(i, _)| i)
            .collect();
        indexes.sort_by(|a, b| search_parameters[*a].code.cmp(&search_parameters[*b].code));
        if let Some(pair) = indexes.windows(2).find(|w| search_parameters[w[0]].code == search_parameters[w[1]].code) {
            return Err(invalid(format!(
                "two core search parameters {} for {resource_type}",
                search_parameters[pair[0]].code
            )));
        }
        search_by_type.insert(resource_type.clone(), indexes);
    }

    let value_sets: Vec<ValueSet> = data
        .value_sets
        .into_iter()
        .map(|vs| {
            let reason = if vs.checkable { None } else { Some(vs.reason.unwrap_or_else(|| "not checkable".into())) };
            let include = vs.include.into_iter().map(|i| (i.system, i.codes)).collect();
            ValueSet::new(vs.url, reason, include)
        })
        .collect();
    let value_set_index: HashMap<String, usize> =
        value_sets.iter().enumerate().map(|(i, vs)| (vs.url.clone(), i)).collect();
    for structure in &mut structures {
        for element in &mut structure.elements {
            if let Some(binding) = &mut element.binding {
                binding.index = value_set_index.get(&binding.value_set).copied();
            }
        }
    }

    let mut compartments: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for record in data.compartments {
        compartments.entry(record.compartment).or_default().push((record.resource, record.params));
    }

    Ok(Definitions {
        fhir_version: data.fhir_version,
        compartments,
        types,
        resource_types,
        structures,
        structure_by_path,
        element_structure,
        primitive_regexes,
        search_parameters,
        search_by_type,
        value_sets,
        value_set_index,
    })
}

fn invalid(message: String) -> DefinitionsError {
    DefinitionsError::Invalid(message)
}

/// Type codes and profile of one element, kept aside until every structure exists.
struct RawTypes {
    structure: StructureId,
    element: usize,
    codes: Vec<String>,
    profile: Option<String>,
}

type Filed = (Vec<Structure>, HashMap<String, StructureId>, Vec<RawTypes>);

fn file_elements(types: &HashMap<String, TypeDef>, records: Vec<ElementRecord>) -> Result<Filed, DefinitionsError> {
    let mut structures: Vec<Structure> = Vec::new();
    let mut by_path: HashMap<String, StructureId> = HashMap::new();
    let mut raw = Vec::with_capacity(records.len());

    let mut names: Vec<&String> =
        types.values().filter(|t| t.kind != TypeKind::PrimitiveType).map(|t| &t.name).collect();
    names.sort();
    for name in names {
        new_structure(&mut structures, &mut by_path, name);
    }

    for record in records {
        let (parent, name) = record
            .path
            .rsplit_once('.')
            .ok_or_else(|| invalid(format!("element path without parent: {}", record.path)))?;
        let structure = match by_path.get(parent) {
            Some(id) => *id,
            None => new_structure(&mut structures, &mut by_path, parent),
        };
        let max = match record.max.as_str() {
            "*" => Max::Unbounded,
            n => Max::Bounded(n.parse().map_err(|_| invalid(format!("bad max at {}", record.path)))?),
        };
        let element = ElementDef {
            name: name.to_string(),
            path: record.path.clone(),
            min: record.min,
            max,
            types: Vec::new(),
            is_summary: record.summary,
            is_modifier: record.modifier,
            content_reference: record.content_reference,
            binding: record.binding.map(|b| Binding { value_set: b.value_set, index: None }),
            profile: record.profile.clone(),
        };
        let elements = &mut structures[structure.0 as usize].elements;
        raw.push(RawTypes { structure, element: elements.len(), codes: record.types, profile: record.profile });
        elements.push(element);
    }
    Ok((structures, by_path, raw))
}

fn new_structure(
    structures: &mut Vec<Structure>,
    by_path: &mut HashMap<String, StructureId>,
    path: &str,
) -> StructureId {
    let id = StructureId(structures.len() as u32);
    structures.push(Structure {
        path: path.to_string(),
        elements: Vec::new(),
        children: FastMap::default(),
        required: Vec::new(),
    });
    by_path.insert(path.to_string(), id);
    id
}

fn resolve_types(
    structures: &mut [Structure],
    by_path: &HashMap<String, StructureId>,
    types: &HashMap<String, TypeDef>,
    raw: Vec<RawTypes>,
) -> Result<(), DefinitionsError> {
    for RawTypes { structure, element, codes, profile } in raw {
        let (path, content_reference) = {
            let e = &structures[structure.0 as usize].elements[element];
            (e.path.clone(), e.content_reference.clone())
        };
        let resolved = if let Some(reference) = content_reference {
            let target = *by_path
                .get(reference.as_str())
                .ok_or_else(|| invalid(format!("{path}: content reference to unknown {reference}")))?;
            vec![ElementType {
                code: "BackboneElement".into(),
                suffix: String::new(),
                target: TypeTarget::Complex(target),
            }]
        } else {
            if codes.is_empty() {
                return Err(invalid(format!("{path} has no type")));
            }
            let mut resolved = Vec::with_capacity(codes.len());
            for code in codes {
                let target = resolve_code(&code, &path, profile.as_deref(), by_path, types)?;
                let suffix = choice_suffix(&code);
                resolved.push(ElementType { code, suffix, target });
            }
            resolved
        };
        let e = &mut structures[structure.0 as usize].elements[element];
        if !e.is_choice() && resolved.len() != 1 {
            return Err(invalid(format!("{path} has several types but is not a choice")));
        }
        e.types = resolved;
    }
    Ok(())
}

fn resolve_code(
    code: &str,
    path: &str,
    profile: Option<&str>,
    by_path: &HashMap<String, StructureId>,
    types: &HashMap<String, TypeDef>,
) -> Result<TypeTarget, DefinitionsError> {
    if let Some(primitive) = Primitive::from_name(code) {
        return Ok(TypeTarget::Primitive(primitive));
    }
    if code == "Resource" {
        return Ok(TypeTarget::Resource);
    }
    if matches!(code, "BackboneElement" | "Element") {
        if let Some(own) = by_path.get(path) {
            return Ok(TypeTarget::Complex(*own));
        }
    }
    let type_name = match profile {
        Some(profile) if code == "Quantity" => profile,
        _ => code,
    };
    match (types.get(type_name), by_path.get(type_name)) {
        (Some(_), Some(id)) => Ok(TypeTarget::Complex(*id)),
        _ => Err(invalid(format!("{path}: unknown type {type_name}"))),
    }
}

/// `dateTime` -> `DateTime`: how a type appears at the end of a choice element's JSON name.
fn choice_suffix(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn index_children(structure: &mut Structure) {
    let mut children = FastMap::default();
    for (i, element) in structure.elements.iter().enumerate() {
        if element.is_choice() {
            for (t, ty) in element.types.iter().enumerate() {
                let key = format!("{}{}", element.base_name(), ty.suffix);
                children.insert(key.into_boxed_str(), ChildRef { element: i as u32, type_index: t as u32 });
            }
        } else {
            children.insert(element.name.clone().into_boxed_str(), ChildRef { element: i as u32, type_index: 0 });
        }
    }
    structure.children = children;
    structure.required =
        (0..structure.elements.len() as u32).filter(|i| structure.elements[*i as usize].min > 0).collect();
}
