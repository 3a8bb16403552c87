//! `toX()` and `convertsToX()`.

use serde_json::{json, Value};

use super::*;

const NONE: [Value; 0] = [];

#[test]
fn to_boolean() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "true.toBoolean()",
            "'true'.toBoolean()",
            "'T'.toBoolean()",
            "'yes'.toBoolean()",
            "'1.0'.toBoolean()",
            "1.toBoolean()",
            "1.0.toBoolean()",
            "'false'.toBoolean() = false",
            "'n'.toBoolean() = false",
            "0.toBoolean() = false",
            "Patient.active.toBoolean()",
            "'maybe'.convertsToBoolean() = false",
            "2.convertsToBoolean() = false",
            "'No'.convertsToBoolean()",
        ],
    );
    assert_eq!(eval("'maybe'.toBoolean()", &patient), NONE);
    assert_eq!(eval("{}.toBoolean()", &patient), NONE);
    assert_eq!(eval("{}.convertsToBoolean()", &patient), NONE);
    assert!(matches!(
        error("(true | false).toBoolean()", &patient),
        FhirPathError::NotSingleton { operation: "toBoolean", .. }
    ));
}

#[test]
fn to_integer_and_decimal_follow_the_string_forms() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "'-12'.toInteger() = -12",
            "'+3'.toInteger() = 3",
            "true.toInteger() = 1",
            "'1.5'.convertsToInteger() = false",
            "' 1'.convertsToInteger() = false",
            "1.5.convertsToInteger() = false",
            "'12'.convertsToInteger()",
            "'-1.50'.toDecimal() = -1.5",
            "2.toDecimal() = 2.0",
            "false.toDecimal() = 0.0",
            "'1e3'.convertsToDecimal() = false",
            "'.5'.convertsToDecimal() = false",
            "'5.'.convertsToDecimal() = false",
            "'5'.convertsToDecimal()",
            "1.convertsToString()",
            "Patient.name.first().convertsToString() = false",
            "4 'mg'.toString() = '4 \\'mg\\''",
        ],
    );
    assert_eq!(eval("'1e3'.toDecimal()", &patient), NONE);
}

#[test]
fn dates_and_times() {
    let patient = patient();
    assert_all_true(
        &patient,
        &[
            "'2020-01-02'.toDate() = @2020-01-02",
            "'2020'.toDate() is Date",
            "@2020-01-02T10:00:00Z.toDate() = @2020-01-02",
            "Patient.birthDate.toDate() = @1974-12-25",
            "'2020-13'.convertsToDate() = false",
            "'2020-01-02T10:00:00Z'.convertsToDate() = false",
            "'2020-01-02T10:00:00Z'.toDateTime() = @2020-01-02T10:00:00Z",
            "@2020-01-02.toDateTime() is DateTime",
            "Patient.meta.lastUpdated.toDateTime() = @2020-01-01T00:00:00Z",
            "'2020-01-02T25:00:00Z'.convertsToDateTime() = false",
            "'10:30'.toTime() = @T10:30",
            "@T10:30:15.toTime() = @T10:30:15",
            "'10:61'.convertsToTime() = false",
            "1.convertsToTime() = false",
        ],
    );
}

#[test]
fn quantities() {
    let observation = observation();
    assert_all_true(
        &observation,
        &[
            "1.toQuantity() = 1 '1'",
            "2.5.toQuantity() = 2.5 '1'",
            "'4 \\'mg\\''.toQuantity() = 4 'mg'",
            "'4.5 days'.toQuantity() = 4.5 days",
            "'4'.toQuantity() = 4 '1'",
            "Observation.value.toQuantity() = 185 '[lb_av]'",
            "Observation.value.toQuantity('[lb_av]') = 185 '[lb_av]'",
            "Observation.value.convertsToQuantity('kg') = false",
            "'4 mg'.convertsToQuantity() = false",
            "'mg'.convertsToQuantity() = false",
            "true.toQuantity() = 1.0 '1'",
            "Observation.code.convertsToQuantity() = false",
        ],
    );
    assert_eq!(eval("Observation.value.toQuantity('kg')", &observation), NONE);
    assert_eq!(eval("Observation.value.toQuantity({})", &observation), NONE);
    assert_eq!(eval("'3 \\'a\\''.toQuantity()", &observation), [json!({"value": 3.0, "unit": "a"})]);
}
