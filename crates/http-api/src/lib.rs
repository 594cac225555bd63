//! HTTP glue shared by the server and the per-user instances: the error answer the Core understands and
//! the check every Core call goes through before any handler runs.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::ErrorBody;

/// An error answer: a status and a message the Core shows to the user verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub why: String,
    pub error_code: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, why: impl Into<String>) -> ApiError {
        ApiError { status, why: why.into(), error_code: None }
    }
    pub fn bad_request(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, why)
    }
    pub fn forbidden(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, why)
    }
    pub fn not_found(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, why)
    }
    pub fn unauthorized(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, why)
    }
    /// Something on our side broke. The detail goes to the log, the caller gets a plain message.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {detail}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Internal error: {context}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { status_code: self.status.as_u16(), why: self.why, error_code: self.error_code };
        (self.status, Json(body)).into_response()
    }
}

/// Who a verified Core call is for.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreCall {
    /// The end-user from the `ucloud-username` header; `None` for system calls.
    pub username: Option<String>,
}

/// Verifies the bearer token (strictly, see `auth`) and decodes the username header. Runs before any
/// handler, so a refused call executes nothing.
pub fn check_core_call(headers: &HeaderMap, verifier: &auth::TokenVerifier) -> Result<CoreCall, ApiError> {
    let authorization = match headers.get_all(axum::http::header::AUTHORIZATION).iter().collect::<Vec<_>>()[..] {
        [] => None,
        [one] => Some(one.to_str().map_err(|_| ApiError::unauthorized("Unauthorized: malformed token"))?),
        _ => return Err(ApiError::unauthorized("Unauthorized: more than one Authorization header")),
    };
    if let Err(e) = verifier.verify_bearer(authorization) {
        tracing::warn!("refused Core call: {e}");
        return Err(ApiError::unauthorized(format!("Unauthorized: {e}")));
    }
    let username = match headers.get_all(protocol::USERNAME_HEADER).iter().collect::<Vec<_>>()[..] {
        [] => None,
        [one] => Some(
            one.to_str()
                .ok()
                .and_then(protocol::decode_username_header)
                .ok_or_else(|| ApiError::bad_request("Malformed ucloud-username header"))?,
        ),
        _ => return Err(ApiError::bad_request("More than one ucloud-username header")),
    };
    Ok(CoreCall { username })
}

/// Set by the server on the user calls it forwards to an instance (after auditing them itself); the ingress
/// strips every client-sent `x-ucim-*` header, so its presence means the server has the audit line.
pub const AUDITED_HEADER: &str = "x-ucim-audited";

/// The `id` of every item in a bulk request body (at most 100), for an audit line. Files calls name paths.
pub fn item_ids(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        id: Option<String>,
    }
    serde_json::from_slice::<protocol::BulkRequest<Item>>(body)
        .map(|r| r.items.into_iter().filter_map(|i| i.id).take(100).collect())
        .unwrap_or_default()
}

/// Parses a JSON body. The Core sends no Content-Type, so none is required.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Malformed request body: {e}")))
}

/// A JSON 200 answer.
pub fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    Json(value).into_response()
}
