//! Property tests: no text makes the compiler panic, and no compiled expression makes the
//! evaluator panic, whatever the resource.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// Fragments that combine into plausible and implausible expressions.
const FRAGMENTS: &[&str] = &[
    "Patient",
    "Observation",
    "name",
    "given",
    "value",
    "extension",
    "code",
    ".",
    ".",
    "(",
    ")",
    "[",
    "]",
    "0",
    "1",
    "2.5",
    "'a'",
    "'http://example.org/eye-colour'",
    " | ",
    " and ",
    " or ",
    " implies ",
    " = ",
    " != ",
    " < ",
    " ~ ",
    " + ",
    " - ",
    " * ",
    " / ",
    " div ",
    " mod ",
    " & ",
    " is ",
    " as ",
    "Quantity",
    "string",
    "where(",
    "select(",
    "exists(",
    "first()",
    "resolve()",
    "ofType(",
    "iif(",
    ",",
    "$this",
    "$index",
    "%resource",
    "{}",
    "@2020",
    "@T10:00",
    "not()",
    "count()",
    "repeat(",
    "descendants()",
    "children()",
    "matches(",
    "substring(",
    "single()",
    " in ",
    " contains ",
    "contains(",
    "memberOf(",
    "-",
];

fn expression() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..24).prop_map(|parts| parts.concat())
}

/// Well-formed expressions: paths and literals combined by operators and functions, so that
/// evaluation (not only parsing) meets many shapes.
fn well_formed() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "Patient",
            "Patient.name",
            "Patient.name.given",
            "name.family",
            "Observation.value",
            "Observation.component",
            "code.coding",
            "extension",
            "Patient.birthDate",
            "Patient.generalPractitioner",
            "Patient.contained",
            "value",
            "1",
            "2.5",
            "'a'",
            "true",
            "{}",
            "@2020-01",
            "@T10:00",
            "5 'mg'",
            "$this",
            "%resource",
            "$index",
            "Patient.active",
        ][..],
    )
    .prop_map(str::to_string);
    leaf.prop_recursive(4, 32, 3, |inner| {
        let binary = prop::sample::select(
            &[
                "|", "and", "or", "xor", "implies", "=", "!=", "~", "<", ">=", "+", "-", "*", "/", "div", "mod", "&",
                "in", "contains",
            ][..],
        );
        let unary = prop::sample::select(
            &[
                "first()",
                "last()",
                "count()",
                "exists()",
                "empty()",
                "not()",
                "distinct()",
                "children()",
                "resolve()",
                "single()",
                "tail()",
                "hasValue()",
                "toString()",
                "lower()",
                "length()",
                "ofType(Quantity)",
                "as(string)",
                "is(HumanName)",
                "descendants()",
            ][..],
        );
        let lambda = prop::sample::select(&["where", "select", "exists", "all", "repeat"][..]);
        let with_argument = prop::sample::select(
            &[
                "extension",
                "hasExtension",
                "contains",
                "startsWith",
                "skip",
                "take",
                "union",
                "combine",
                "substring",
                "indexOf",
                "memberOf",
                "matches",
            ][..],
        );
        prop_oneof![
            (inner.clone(), binary, inner.clone()).prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (inner.clone(), unary).prop_map(|(a, f)| format!("({a}).{f}")),
            (inner.clone(), lambda, inner.clone()).prop_map(|(a, f, b)| format!("({a}).{f}({b})")),
            (inner.clone(), with_argument, inner.clone()).prop_map(|(a, f, b)| format!("({a}).{f}({b})")),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("iif({a}, {b}, {c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a})[{b}]")),
            (
                inner.clone(),
                prop::sample::select(&["is", "as"][..]),
                prop::sample::select(&["Quantity", "string", "Patient", "Boolean"][..])
            )
                .prop_map(|(a, op, t)| format!("({a}) {op} {t}")),
            inner.prop_map(|a| format!("-({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiling_arbitrary_text_never_panics(text in "\\PC{0,64}") {
        let _ = compile(&text);
    }

    #[test]
    fn well_formed_expressions_compile_and_never_panic(text in well_formed()) {
        let compiled = compile(&text);
        prop_assert!(compiled.is_ok(), "{text}: {compiled:?}");
        if let Ok(compiled) = compiled {
            for resource in [patient(), observation(), empty(), Value::Null] {
                let _ = compiled.evaluate(&resource);
            }
        }
    }

    #[test]
    fn evaluating_fragment_soup_never_panics(text in expression()) {
        if let Ok(compiled) = compile(&text) {
            for resource in [patient(), observation(), empty(), Value::Null] {
                let _ = compiled.evaluate(&resource);
            }
        }
    }
}
