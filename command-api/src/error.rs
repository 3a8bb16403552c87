//! The API's one error type and the one place where errors become HTTP statuses and
//! OperationOutcomes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use event_log::LogError;
use fhir_core::{operation_outcome, Issue, IssueType};
use time::OffsetDateTime;

use crate::respond::{etag, fhir_json_response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, an invalid resource, a bad parameter.
    #[error("bad request")]
    BadRequest(Vec<Issue>),
    #[error("not found")]
    NotFound(String),
    /// The resource was deleted; carries the version and time of the delete.
    #[error("gone")]
    Gone { version: u64, deleted_at: OffsetDateTime },
    /// No credentials, or credentials that do not check out.
    #[error("unauthorized")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden(String),
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error("not acceptable")]
    NotAcceptable(String),
    #[error("conflict")]
    Conflict(String),
    #[error("precondition failed")]
    PreconditionFailed(String),
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    /// The request is well-formed but breaks a rule (a patch that cannot apply, or whose result is invalid).
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    /// Too many at once (exports in progress); retry after the given seconds.
    #[error("too many requests")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// The server cannot answer now (shutting down, or a read model is behind); retry.
    #[error("unavailable")]
    Unavailable(String),
    /// A failure of one entry of a bundle: the entry's own status, with issues that name it.
    #[error("bundle entry failed")]
    Entry { status: StatusCode, issues: Vec<Issue> },
    /// A fault of the server's own; the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        ApiError::BadRequest(vec![Issue::error(IssueType::Invalid, diagnostics)])
    }

    /// The same failure, told as the failure of bundle entry `index`.
    pub fn at_entry(self, index: usize) -> ApiError {
        let status = self.status();
        let issues = self
            .issues()
            .into_iter()
            .map(|mut issue| {
                issue.diagnostics = format!("entry {index}: {}", issue.diagnostics);
                issue.expression = match issue.expression.is_empty() {
                    true => vec![format!("Bundle.entry[{index}]")],
                    false => issue.expression.iter().map(|e| format!("Bundle.entry[{index}].resource.{e}")).collect(),
                };
                issue
            })
            .collect();
        ApiError::Entry { status, issues }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Entry { status, .. } => *status,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn issues(&self) -> Vec<Issue> {
        let one = |code, text: &str| vec![Issue::error(code, text)];
        match self {
            ApiError::Entry { issues, .. } => issues.clone(),
            ApiError::BadRequest(issues) | ApiError::Unprocessable(issues) => issues.clone(),
            ApiError::NotFound(text) => one(IssueType::NotFound, text),
            ApiError::Gone { version, .. } => {
                one(IssueType::Deleted, &format!("the resource was deleted (version {version})"))
            }
            ApiError::Unauthorized(text) => one(IssueType::Login, text),
            ApiError::Forbidden(text) => one(IssueType::Forbidden, text),
            ApiError::MethodNotAllowed(text) => one(IssueType::NotSupported, text),
            ApiError::NotAcceptable(text) | ApiError::UnsupportedMediaType(text) => one(IssueType::NotSupported, text),
            ApiError::Conflict(text) | ApiError::PreconditionFailed(text) => one(IssueType::Conflict, text),
            ApiError::PayloadTooLarge { limit } => {
                one(IssueType::TooLong, &format!("the request body is larger than the limit of {limit} bytes"))
            }
            ApiError::TooManyRequests { message, .. } => one(IssueType::Throttled, message),
            ApiError::Unavailable(text) => one(IssueType::Transient, text),
            ApiError::Internal(_) => one(IssueType::Exception, "internal server error"),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Conflict { .. } => ApiError::Conflict("the resource was changed by another request; retry".into()),
            LogError::DuplicateStream { .. } => ApiError::invalid("the same resource appears more than once in one request"),
            LogError::EmptyAppend => ApiError::invalid("nothing to write"),
            LogError::Closed => ApiError::Unavailable("the server is shutting down; retry shortly".into()),
            LogError::Storage(detail) => ApiError::Internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = serde_json::to_vec(&operation_outcome(&self.issues())).unwrap_or_default();
        let mut response = fhir_json_response(status, body.into());
        if let ApiError::Unauthorized(_) = self {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        if let ApiError::TooManyRequests { retry_after_secs, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let ApiError::Gone { version, deleted_at } = self {
            let headers = response.headers_mut();
            headers.insert(header::ETAG, etag(version));
            if let Ok(value) = HeaderValue::from_str(&fhir_core::instant::http_date(deleted_at)) {
                headers.insert(header::LAST_MODIFIED, value);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
