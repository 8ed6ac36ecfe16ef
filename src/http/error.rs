//! API errors: `{"error":{"code","message","id"}}` for the client, the detail and the same id in the log.
//! Also the JSON body extractor whose rejections are such errors.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Logged with the error id, never sent to the client.
    pub detail: Option<String>,
    /// For configuration errors: the offending key.
    pub key: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorInfo {
    /// Stable machine-readable code, e.g. `invalid_json`, `unauthenticated`, `invalid_config`.
    pub code: String,
    pub message: String,
    /// Quote this id when reporting a problem: the server log has the details under it.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), detail: None, key: None, retry_after: None }
    }
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// The request field (or config key) the error is about, for the UI to show it next to that field.
    pub(crate) fn with_key(self, key: impl Into<String>) -> Self {
        ApiError { key: Some(key.into()), ..self }
    }
    /// An unexpected failure: the client gets a generic message, the log gets `detail`.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError {
            detail: Some(detail.to_string()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has details")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let detail = self.detail.as_deref().unwrap_or("");
        if self.status.is_server_error() {
            tracing::error!(error_id = %id, code = self.code, status = self.status.as_u16(), detail, "{}", self.message);
        } else {
            tracing::info!(error_id = %id, code = self.code, status = self.status.as_u16(), detail, "{}", self.message);
        }
        let body = ErrorBody { error: ErrorInfo { code: self.code.into(), message: self.message, id, key: self.key } };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError as E;
        match e {
            E::BadUsername(_) | E::BadPassword(_) | E::BadTokenName(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string())
            }
            E::AlreadySetUp => ApiError::conflict(e.to_string()),
            E::DuplicateToken(_) => ApiError::conflict(e.to_string()),
            E::Storage(_) | E::Hash(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> Self {
        use crate::config::ConfigError as E;
        match &e {
            E::Invalid { key, .. } => ApiError {
                key: Some(key.clone()),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e.to_string())
            },
            E::Syntax { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e.to_string()),
            E::Stale { .. } => ApiError::new(StatusCode::PRECONDITION_FAILED, "stale_config", e.to_string()),
            E::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::Read { .. } | E::Write { .. } => ApiError::internal(&e),
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (bad JSON → 400, too large → 413, wrong type → 415).
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as R;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let (code, message) = match &rej {
                    R::JsonDataError(_) => ("invalid_input", rej.body_text()),
                    R::JsonSyntaxError(_) => ("invalid_json", rej.body_text()),
                    R::MissingJsonContentType(_) => {
                        ("unsupported_media_type", "expected Content-Type: application/json".to_string())
                    }
                    R::BytesRejection(_) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        ("payload_too_large", "request body is too large".to_string())
                    }
                    _ => ("bad_request", rej.body_text()),
                };
                Err(ApiError::new(rej.status(), code, message))
            }
        }
    }
}
