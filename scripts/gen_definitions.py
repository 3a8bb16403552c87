#!/usr/bin/env python3
"""Turns the official FHIR R4 package into the compact data file fhir-core compiles in.

Usage:
  gen_definitions.py definitions PACKAGE OUT_JSON
  gen_definitions.py examples PACKAGE DEST_DIR

PACKAGE is the npm tarball of hl7.fhir.r4.examples@4.0.1 (or a directory it was unpacked
into). Standard library only, so it runs wherever python3 does.

`definitions` writes one JSON object whose arrays hold one record per line, so that a change in
the generator shows as a readable diff:
  primitives        name + the spec's regex for the value (from the `regex` extension)
  types             every resource, complex and primitive type (specializations) plus the
                    Quantity profiles SimpleQuantity and MoneyQuantity
  elements          the snapshot elements of those types (not primitives' own), with the facts
                    the server needs: cardinality, type codes, summary/modifier flags, content
                    references and required bindings
  searchParameters  every SearchParameter in the package; `core` marks the 1,375 of the spec's
                    own search-parameters bundle (the rest are examples and extension-based ones)
  valueSets         the codes of each value set used by a required binding, where they can be
                    computed from the package's CodeSystems; the others are marked not checkable

`examples` copies the example instances (every resource that is not a conformance or
terminology artifact, see CONFORMANCE_TYPES) into DEST_DIR, one file each.
"""

import json
import os
import sys
import tarfile

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
QUANTITY_PROFILES = ("SimpleQuantity", "MoneyQuantity")

# Resource types whose instances in the package are definitions rather than examples. The 719
# remaining files are the spec's example instances.
CONFORMANCE_TYPES = {
    "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap",
    "OperationDefinition", "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide",
    "NamingSystem", "StructureMap", "GraphDefinition", "MessageDefinition",
    "TerminologyCapabilities", "ExampleScenario",
}
EXPECTED_EXAMPLES = 719


def read_package(path):
    """Yields (file name, raw bytes, parsed resource) for every top-level JSON resource."""
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            if name.endswith(".json") and name != "package.json":
                with open(os.path.join(path, name), "rb") as f:
                    raw = f.read()
                yield name, raw, json.loads(raw)
        return
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 2 or not parts[1].endswith(".json"):
                continue
            if parts[1] == "package.json":
                continue
            raw = tar.extractfile(member).read()
            yield parts[1], raw, json.loads(raw)


def ext_value(extensions, url):
    for ext in extensions or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def type_code(type_entry, path, is_resource):
    """The FHIR type name of one ElementDefinition.type, resolving the FHIRPath system types."""
    code = type_entry["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        fhir_type = ext_value(type_entry.get("extension"), FHIR_TYPE_EXT)
        code = fhir_type or "string"
        # R4's snapshots declare Resource.id as System.String/string; the spec (and its JSON
        # schema) give it type id.
        if is_resource and path.count(".") == 1 and path.endswith(".id"):
            code = "id"
    return code


def element_record(sd_name, element, is_resource):
    path = element["path"]
    if sd_name != element["path"].split(".")[0]:
        path = sd_name + path[path.index("."):]  # SimpleQuantity's elements say "Quantity.x"
    record = {"path": path, "min": element["min"], "max": element["max"]}
    types = [type_code(t, element["path"], is_resource) for t in element.get("type", [])]
    if types:
        record["types"] = types
    profiles = {
        p.rsplit("/", 1)[-1]
        for t in element.get("type", [])
        for p in t.get("profile", [])
    }
    if profiles:
        unknown = profiles - set(QUANTITY_PROFILES)
        if unknown:
            raise SystemExit(f"unexpected type profile {unknown} at {path}")
        record["profile"] = sorted(profiles)[0]
    if element.get("isSummary"):
        record["summary"] = True
    if element.get("isModifier"):
        record["modifier"] = True
    if "contentReference" in element:
        record["contentReference"] = element["contentReference"].lstrip("#")
    binding = element.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        record["binding"] = {"strength": "required", "valueSet": binding["valueSet"].split("|")[0]}
    return record


def collect_concepts(concepts, out):
    for concept in concepts or []:
        out.append(concept["code"])
        collect_concepts(concept.get("concept"), out)


def expand(url, value_sets, code_systems, seen=()):
    """(systems, reason): systems maps system url -> codes; reason says why it can't be done."""
    vs = value_sets.get(url)
    if vs is None:
        return None, "value set is not in the package"
    if url in seen:
        return None, "value set includes itself"
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return None, "compose.exclude is not evaluated"
    systems = {}
    for include in compose.get("include", []):
        if include.get("filter"):
            return None, "include uses a filter"
        for nested in include.get("valueSet", []):
            sub, reason = expand(nested.split("|")[0], value_sets, code_systems, seen + (url,))
            if sub is None:
                return None, reason
            for system, codes in sub.items():
                systems.setdefault(system, []).extend(codes)
        system = include.get("system")
        if system is None:
            continue
        if "concept" in include:
            codes = [c["code"] for c in include["concept"]]
        else:
            cs = code_systems.get(system)
            if cs is None or cs.get("content") != "complete":
                return None, f"code system {system} is not in the package"
            codes = []
            collect_concepts(cs.get("concept"), codes)
        systems.setdefault(system, []).extend(codes)
    if not systems:
        return None, "empty compose"
    return {s: sorted(set(c)) for s, c in systems.items()}, None


def search_parameter_record(sp, core):
    record = {
        "url": sp["url"],
        "name": sp["name"],
        "code": sp["code"],
        "base": sp.get("base", []),
        "type": sp["type"],
    }
    for key in ("expression", "target", "modifier", "comparator", "chain", "multipleOr", "multipleAnd"):
        if key in sp:
            record[key] = sp[key]
    if "component" in sp:
        record["component"] = [
            {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
        ]
    record["core"] = core
    return record


def write_array(out, key, records, last=False):
    out.write(f'"{key}":[\n')
    for i, record in enumerate(records):
        out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
        out.write(",\n" if i + 1 < len(records) else "\n")
    out.write("]\n" if last else "],\n")


def definitions(package, out_path):
    sds, sps, value_sets, code_systems, compartments = [], [], {}, {}, []
    core_search_urls = set()
    for name, _, res in read_package(package):
        rt = res.get("resourceType")
        if rt == "StructureDefinition":
            sds.append(res)
        elif rt == "SearchParameter":
            sps.append(res)
        elif rt == "ValueSet":
            value_sets[res["url"]] = res
        elif rt == "CodeSystem":
            code_systems[res["url"]] = res
        elif rt == "CompartmentDefinition" and res.get("id") != "example":
            for member in res.get("resource", []):
                if member.get("param"):
                    compartments.append({"compartment": res["code"], "resource": member["code"], "params": member["param"]})
        elif rt == "Bundle" and name == "Bundle-searchParams.json":
            core_search_urls = {e["resource"]["url"] for e in res["entry"]}

    primitives, types, elements, required_vs = [], [], [], set()
    for sd in sorted(sds, key=lambda s: s["id"]):
        kind = sd["kind"]
        if kind not in ("resource", "complex-type", "primitive-type"):
            continue
        is_profile = sd.get("derivation") == "constraint"
        if is_profile and sd["id"] not in QUANTITY_PROFILES:
            continue
        name = sd["id"] if is_profile else sd["type"]
        record = {"name": name, "kind": kind, "abstract": sd.get("abstract", False)}
        base = sd.get("baseDefinition")
        if base:
            record["base"] = base.rsplit("/", 1)[-1]
        types.append(record)
        snapshot = sd["snapshot"]["element"]
        if kind == "primitive-type":
            value = next(e for e in snapshot if e["path"] == name + ".value")
            regex = ext_value(value["type"][0].get("extension"), REGEX_EXT)
            primitives.append({"name": name, "regex": regex} if regex else {"name": name})
            continue
        for element in snapshot[1:]:
            rec = element_record(name, element, kind == "resource")
            elements.append(rec)
            if "binding" in rec:
                required_vs.add(rec["binding"]["valueSet"])

    vs_records = []
    for url in sorted(required_vs):
        systems, reason = expand(url, value_sets, code_systems)
        if systems is None:
            vs_records.append({"url": url, "checkable": False, "reason": reason})
        else:
            vs_records.append({
                "url": url,
                "checkable": True,
                "include": [{"system": s, "codes": c} for s, c in sorted(systems.items())],
            })

    if len(core_search_urls) < 1000:
        raise SystemExit("Bundle-searchParams.json not found or too small")
    sp_records = [
        search_parameter_record(sp, sp["url"] in core_search_urls)
        for sp in sorted(sps, key=lambda s: s["url"])
    ]

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp_path = out_path + ".tmp"
    with open(tmp_path, "w", encoding="utf-8") as out:
        out.write('{"fhirVersion":"4.0.1","source":"hl7.fhir.r4.examples@4.0.1",\n')
        write_array(out, "primitives", primitives)
        write_array(out, "types", types)
        write_array(out, "elements", elements)
        write_array(out, "searchParameters", sp_records)
        write_array(out, "valueSets", vs_records)
        compartments.sort(key=lambda c: (c["compartment"], c["resource"]))
        write_array(out, "compartments", compartments, last=True)
        out.write("}\n")
    os.replace(tmp_path, out_path)
    checkable = sum(1 for v in vs_records if v["checkable"])
    print(
        f"wrote {out_path}: {len(types)} types, {len(elements)} elements, "
        f"{len(sp_records)} search parameters ({len(core_search_urls)} core), "
        f"{len(vs_records)} required value sets ({checkable} checkable)"
    )


def examples(package, dest):
    os.makedirs(dest, exist_ok=True)
    count = 0
    for name, raw, res in read_package(package):
        if res.get("resourceType") in CONFORMANCE_TYPES:
            continue
        with open(os.path.join(dest, name), "wb") as f:
            f.write(raw)
        count += 1
    if count != EXPECTED_EXAMPLES:
        raise SystemExit(f"expected {EXPECTED_EXAMPLES} example instances, found {count}")
    print(f"wrote {count} example instances to {dest}")


def main(argv):
    if len(argv) != 4 or argv[1] not in ("definitions", "examples"):
        raise SystemExit(__doc__)
    if argv[1] == "definitions":
        definitions(argv[2], argv[3])
    else:
        examples(argv[2], argv[3])


if __name__ == "__main__":
    main(sys.argv)
