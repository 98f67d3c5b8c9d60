//! Stripe's error envelope.
//!
//! Every failure the API can report is an [`ApiError`]; it renders as
//! `{"error": {...}}` with the HTTP status Stripe uses for that kind of error, so
//! official SDKs raise the exception class their users expect.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

/// The `type` field of Stripe's error object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    ApiError,
    CardError,
    IdempotencyError,
    InvalidRequestError,
}

/// One API error, shaped as Stripe's `api_errors` schema. Boxed: errors travel
/// through every `Result` of the request path, and most of them are the `Ok` kind.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ApiError(Box<ApiErrorBody>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorBody;
    fn deref(&self) -> &ApiErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorBody {
        &mut self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {:?}: {}",
            self.status, self.kind, self.code, self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, Clone, Serialize)]
pub struct ApiErrorBody {
    #[serde(skip)]
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: ErrorType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_intent: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_log_url: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError(Box::new(ApiErrorBody {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            param: None,
            doc_url: None,
            payment_intent: None,
            payment_method: None,
            setup_intent: None,
            charge: None,
            request_log_url: None,
        }))
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequestError, message)
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.doc_url = Some(format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        ));
        self.code = Some(code.to_string());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 404 for an id that does not exist in this account, in Stripe's words.
    pub fn no_such(object: &str, id: &str) -> Self {
        Self::new(
            404,
            ErrorType::InvalidRequestError,
            format!("No such {object}: '{id}'"),
        )
        .with_code("resource_missing")
        .with_param("id")
    }

    /// A missing object named by a request parameter rather than the URL: Stripe
    /// answers 400 (not 404), naming the parameter.
    pub fn referenced_by(mut self, param: &str) -> Self {
        if self.status == 404 && self.code.as_deref() == Some("resource_missing") {
            self.status = 400;
        }
        self.param = Some(param.to_string());
        self
    }

    pub fn missing_param(param: &str) -> Self {
        Self::invalid_request(format!("Missing required param: {param}."))
            .with_code("parameter_missing")
            .with_param(param)
    }

    pub fn unknown_param(param: &str) -> Self {
        Self::invalid_request(format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
            .with_param(param)
    }

    pub fn invalid_param(param: &str, code: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message)
            .with_code(code)
            .with_param(param)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, ErrorType::InvalidRequestError, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorType::InvalidRequestError, message)
    }

    /// An internal failure. The detail goes to the log, never to the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            500,
            ErrorType::ApiError,
            "An unknown error occurred, please try again later.",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The response body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self })
    }
}
