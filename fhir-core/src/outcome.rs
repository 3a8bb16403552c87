//! OperationOutcome: how every error and warning is told to a client.

use serde::Serialize;
use serde_json::{json, Value};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// `OperationOutcome.issue.code` (the subset of the IssueType value set this server reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    Exception,
    Timeout,
    Throttled,
    Informational,
    Incomplete,
}

/// One issue: what is wrong and, where it applies, the FHIRPath of the element at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    /// FHIRPath expression(s) of the element(s) the issue is about, e.g. `Patient.name[0].given[1]`.
    pub expression: Vec<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
        }
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.expression.push(path.into());
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }

    fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if !self.expression.is_empty() {
            issue["expression"] = json!(self.expression);
        }
        issue
    }
}

/// Builds an `OperationOutcome` resource from issues. An empty list yields one informational
/// "All OK" issue, since the resource requires at least one.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_carries_path_and_codes() {
        let outcome = operation_outcome(&[Issue::error(IssueType::Structure, "unknown element 'foo'").at("Patient.foo")]);
        assert_eq!(outcome["issue"][0]["code"], "structure");
        assert_eq!(outcome["issue"][0]["severity"], "error");
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.foo");
    }

    #[test]
    fn empty_outcome_is_still_valid() {
        let outcome = operation_outcome(&[]);
        assert_eq!(outcome["issue"][0]["severity"], "information");
        assert_eq!(outcome["issue"][0]["code"], "informational");
    }

    #[test]
    fn kebab_case_codes() {
        let outcome = operation_outcome(&[Issue::error(IssueType::NotSupported, "x")]);
        assert_eq!(outcome["issue"][0]["code"], "not-supported");
        let outcome = operation_outcome(&[Issue::error(IssueType::BusinessRule, "x")]);
        assert_eq!(outcome["issue"][0]["code"], "business-rule");
    }
}
