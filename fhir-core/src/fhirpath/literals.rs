//! Literal and environment-variable terms: dates and times, calendar units of quantities,
//! `%resource` and the constant variables (`%ucum`, `%vs-*`, `%ext-*`).

use super::ast::{Expr, Literal};
use super::error::FhirPathError;

pub(crate) fn is_calendar_unit(word: &str) -> bool {
    matches!(
        word,
        "year"
            | "years"
            | "month"
            | "months"
            | "week"
            | "weeks"
            | "day"
            | "days"
            | "hour"
            | "hours"
            | "minute"
            | "minutes"
            | "second"
            | "seconds"
            | "millisecond"
            | "milliseconds"
    )
}

pub(crate) fn date_time_literal(text: &str, position: usize) -> Result<Expr, FhirPathError> {
    let invalid = || FhirPathError::Syntax { position, message: format!("invalid date/time literal @{text}") };
    match text.strip_suffix('T') {
        // `@2020-01-02T`: a dateTime at date precision.
        Some(date) => {
            crate::instant::parse_range(date).ok_or_else(invalid)?;
            Ok(Expr::Literal(Literal::DateTime(date.into())))
        }
        None => {
            crate::instant::parse_range(text).ok_or_else(invalid)?;
            if text.contains('T') {
                Ok(Expr::Literal(Literal::DateTime(text.into())))
            } else {
                Ok(Expr::Literal(Literal::Date(text.into())))
            }
        }
    }
}

pub(crate) fn time_literal(text: &str, position: usize) -> Result<Expr, FhirPathError> {
    if super::compare::time_range(text).is_none() {
        return Err(FhirPathError::Syntax { position, message: format!("invalid time literal @T{text}") });
    }
    Ok(Expr::Literal(Literal::Time(text.into())))
}

pub(crate) fn variable(name: &str, position: usize) -> Result<Expr, FhirPathError> {
    let constant = |text: &str| Ok(Expr::Literal(Literal::String(text.into())));
    match name {
        "resource" => Ok(Expr::Resource),
        "rootResource" => Ok(Expr::RootResource),
        "context" => Ok(Expr::Context),
        "ucum" => constant("http://unitsofmeasure.org"),
        "sct" => constant("http://snomed.info/sct"),
        "loinc" => constant("http://loinc.org"),
        _ => {
            if let Some(value_set) = name.strip_prefix("vs-") {
                constant(&format!("http://hl7.org/fhir/ValueSet/{value_set}"))
            } else if let Some(extension) = name.strip_prefix("ext-") {
                constant(&format!("http://hl7.org/fhir/StructureDefinition/{extension}"))
            } else {
                Err(FhirPathError::UnknownVariable { name: name.to_string(), position })
            }
        }
    }
}
