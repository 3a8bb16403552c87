//! Operators: equality, ordering, logic, union, membership, arithmetic.

use serde_json::json;

use super::*;

#[test]
fn equality_of_primitives_and_collections() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "1 = 1",
            "1 = 1.0",
            "'a' = 'a'",
            "('a' = 'b') = false",
            "Patient.gender = 'male'",
            "Patient.active = true",
            "Patient.deceased = false",
            "(1 | 2) = (1 | 2)",
            "((1 | 2) = (2 | 1)) = false",
            "((1 | 2) = 1) = false",
            "Patient.name[0].given = ('Peter' | 'James')",
            "'a' != 'b'",
            "(1 != 1) = false",
            "Patient.name[0] = Patient.name.first()",
            "(Patient.name[0] = Patient.name[1]) = false",
            "(Patient.gender = 1) = false",
        ],
    );
    assert_eq!(truth("{} = 1", &patient), None);
    assert_eq!(truth("1 != {}", &patient), None);
    assert_eq!(truth("Patient.foo = 'x'", &patient), None);
}

#[test]
fn equivalence_ignores_case_whitespace_and_order() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "'Hello  World' ~ 'hello world'",
            "'a' !~ 'b'",
            "{} ~ {}",
            "(1 | 2) ~ (2 | 1)",
            "({} ~ 1) = false",
            "1 ~ 1.0",
            "@2012-01-01 ~ @2012-01-01",
            "(@2012 ~ @2012-01) = false",
        ],
    );
}

#[test]
fn dates_compare_at_their_precision() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "@2012 = @2012",
            "@2012 < @2013-06",
            "@2013-06 > @2012",
            "@2012-01-01T10:00:00Z = @2012-01-01T11:00:00+01:00",
            "@2012-01-01T10:00:00Z = @2012-01-01T10:00:00.000Z",
            "@2012-01-01T10:00:00Z < @2012-01-01T10:00:00.001Z",
            "Patient.birthDate < @2000",
            "Patient.birthDate = @1974-12-25",
            "Patient.birthDate >= @1974-11",
            "Patient.meta.lastUpdated > @2019-12-31",
            "@T10:00 < @T11:00",
            "@T10:00:00 = @T10:00:00.000",
            "(@2012-01 = @2013) = false",
        ],
    );
    assert_eq!(truth("@2012 = @2012-01", &patient), None);
    assert_eq!(truth("@2012-06 < @2012", &patient), None);
    assert_eq!(truth("Patient.birthDate = @1974-12-25T10:00:00Z", &patient), None);
}

#[test]
fn ordering_of_numbers_strings_and_quantities() {
    let observation = observation();
    assert_all_true(
        &observation,
        &[
            "1 < 2",
            "2.5 >= 2",
            "2 <= 2",
            "'abc' < 'abd'",
            "('b' > 'a') and ('a' >= 'a')",
            "Observation.value.value > 100",
            "4 'mg' < 5 'mg'",
            "Observation.value > 100 '[lb_av]'",
            "Observation.value = 185 '[lb_av]'",
        ],
    );
    assert_eq!(truth("4 'mg' < 5 'kg'", &observation), None, "no unit conversion");
    assert_eq!(truth("{} < 1", &observation), None);
    assert!(matches!(error("1 < 'a'", &observation), FhirPathError::InvalidOperand { operation: "<", .. }));
    assert!(matches!(error("Observation.code < 1", &observation), FhirPathError::InvalidOperand { .. }));
    assert!(matches!(error("(1 | 2) < 3", &observation), FhirPathError::NotSingleton { operation: "<", count: 2 }));
}

#[test]
fn three_valued_logic() {
    let resource = empty();
    let cases: &[(&str, Option<bool>)] = &[
        ("true and true", Some(true)),
        ("true and false", Some(false)),
        ("true and {}", None),
        ("{} and false", Some(false)),
        ("false and {}", Some(false)),
        ("{} and {}", None),
        ("false or false", Some(false)),
        ("false or true", Some(true)),
        ("{} or true", Some(true)),
        ("{} or false", None),
        ("true xor false", Some(true)),
        ("true xor true", Some(false)),
        ("{} xor true", None),
        ("true implies false", Some(false)),
        ("true implies true", Some(true)),
        ("false implies {}", Some(true)),
        ("true implies {}", None),
        ("{} implies true", Some(true)),
        ("{} implies false", None),
        // A single non-boolean item counts as true.
        ("'text' and true", Some(true)),
    ];
    for (expression, expected) in cases {
        assert_eq!(truth(expression, &resource), *expected, "{expression}");
    }
    // The right operand is not evaluated when the left decides.
    assert_eq!(truth("false and (1 | 2).single()", &resource), Some(false));
    assert_eq!(truth("true or (1 | 2).single()", &resource), Some(true));
    assert!(matches!(
        error("(true | false) and true", &resource),
        FhirPathError::NotSingleton { operation: "and", .. }
    ));
}

#[test]
fn union_removes_duplicates_and_keeps_order() {
    let patient = patient();
    assert_eq!(eval("1 | 2 | 1 | 3", &patient), [json!(1), json!(2), json!(3)]);
    assert_eq!(
        eval("Patient.name.given | Patient.name.given", &patient),
        [json!("Peter"), json!("James"), json!("Jim")]
    );
    assert_eq!(eval("Patient.gender | {}", &patient), [json!("male")]);
    assert_eq!(eval("(Patient.telecom | Patient.telecom).count()", &patient), [json!(2)]);
    assert_eq!(eval("Patient.name.family.combine(Patient.name.family).count()", &patient), [json!(4)]);
    assert_eq!(
        eval("Patient.name.family.union('Chalmers' | 'X')", &patient),
        [json!("Chalmers"), json!("Windsor"), json!("X")]
    );
}

#[test]
fn membership() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "'b' in ('a' | 'b')",
            "('c' in ('a' | 'b')) = false",
            "('a' | 'b') contains 'a'",
            "(('a' | 'b') contains 'c') = false",
            "Patient.gender in ('male' | 'female')",
            "('x' in {}) = false",
        ],
    );
    assert_eq!(truth("{} in (1 | 2)", &patient), None);
    assert!(matches!(error("(1 | 2) in (1 | 2)", &patient), FhirPathError::NotSingleton { operation: "in", .. }));
}

#[test]
fn arithmetic() {
    let resource = empty();
    assert_all_true(
        &resource,
        &[
            "1 + 2 = 3",
            "5 - 7 = -2",
            "3 * 4 = 12",
            "7 / 2 = 3.5",
            "5 div 2 = 2",
            "-5 div 2 = -2",
            "5 mod 2 = 1",
            "5.5 mod 0.5 = 0",
            "7.5 div 2 = 3",
            "1.5 + 1 = 2.5",
            "'a' + 'b' = 'ab'",
            "'a' & {} = 'a'",
            "{} & {} = ''",
            "2 'mg' + 3 'mg' = 5 'mg'",
        ],
    );
    for empty_result in ["1 / 0", "1 div 0", "1 mod 0", "9223372036854775807 + 1", "{} + 1", "1.0 / 0.0"] {
        assert!(eval(empty_result, &resource).is_empty(), "{empty_result}");
    }
    assert!(matches!(error("1 + 'a'", &resource), FhirPathError::InvalidOperand { operation: "+", .. }));
    assert!(matches!(error("-'a'", &resource), FhirPathError::InvalidOperand { .. }));
    assert!(matches!(error("@2020 + 1 year", &resource), FhirPathError::InvalidOperand { .. }));
    assert!(matches!(error("(1 | 2) + 1", &resource), FhirPathError::NotSingleton { .. }));
    assert!(matches!(error("1 & 'a'", &resource), FhirPathError::InvalidOperand { operation: "&", .. }));
}

#[test]
fn indexer() {
    let patient = patient();
    assert_eq!(eval("Patient.name[1].given", &patient), [json!("Jim")]);
    assert_eq!(eval("Patient.name.given[3]", &patient), Vec::<serde_json::Value>::new());
    assert_eq!(eval("Patient.name.given[-1]", &patient), Vec::<serde_json::Value>::new());
    assert_eq!(eval("Patient.name.given[1 + 1]", &patient), [json!("Jim")]);
    assert_eq!(eval("Patient.name[{}]", &patient), Vec::<serde_json::Value>::new());
    assert!(matches!(error("Patient.name['a']", &patient), FhirPathError::InvalidOperand { operation: "[]", .. }));
}
