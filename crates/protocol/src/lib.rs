//! UCloud provider API wire types (see `provider-api.md` in the design notes).
//!
//! Everything here is plain data plus serde: no IO, no Slurm, no HTTP server. Field names follow the
//! Core's JSON exactly. Deserialisers accept `null` for lists and maps and ignore unknown fields,
//! because the Core sends large objects with many fields we do not use.

pub mod calls;
pub mod files;
pub mod jobs;
pub mod products;

use serde::{Deserialize, Serialize};

pub use calls::*;
pub use files::*;
pub use jobs::*;
pub use products::*;

/// `{"items": [...]}`: every bulk call's request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct BulkRequest<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub items: Vec<T>,
}

impl<T> BulkRequest<T> {
    pub fn new(items: Vec<T>) -> Self {
        BulkRequest { items }
    }
}

/// `{"responses": [...]}`: one entry per request item, same order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct BulkResponse<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub responses: Vec<T>,
}

impl<T> BulkResponse<T> {
    pub fn new(responses: Vec<T>) -> Self {
        BulkResponse { responses }
    }
}

/// The error body every non-2xx answer carries. The Core reads `why` and `errorCode`; the HTTP status is
/// authoritative.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status_code: u16,
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// `{}`: the answer of every mutation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Empty {}

/// `{"id": "..."}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FindByStringId {
    #[serde(default)]
    pub id: String,
}

/// `{"username": "..."}`, the body of `integration.init`, `connect` and `unlinked`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsernameRequest {
    pub username: String,
}

/// The answer of `integration.connect`: where the Core sends the user's browser next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    pub redirect_to: String,
}

/// The answer of `integration.retrieveManifest`. `enabled` is always sent: a manifest without it decodes as
/// `false` in the Core (§10.23).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub enabled: bool,
    pub expire_after_ms: Option<i64>,
}

/// Provider → Core: `POST /auth/providers/refresh` item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Core → provider: the answer item of `/auth/providers/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub csrf_token: String,
}

/// `{"hours": 1, "minutes": 0, "seconds": 0}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimpleDuration {
    #[serde(default)]
    pub hours: i64,
    #[serde(default)]
    pub minutes: i64,
    #[serde(default)]
    pub seconds: i64,
}

impl SimpleDuration {
    pub fn total_seconds(&self) -> i64 {
        self.hours * 3600 + self.minutes * 60 + self.seconds
    }

    pub fn from_seconds(total: i64) -> Self {
        SimpleDuration { hours: total / 3600, minutes: (total % 3600) / 60, seconds: total % 60 }
    }
}

/// Lists and maps may arrive as `null` from the Core (§1.4).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_accepts_null_and_missing_lists() {
        let r: BulkResponse<FindByStringId> = serde_json::from_str("{}").unwrap();
        assert!(r.responses.is_empty());
        let r: BulkRequest<FindByStringId> = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(r.items.is_empty());
    }

    #[test]
    fn manifest_always_sends_enabled_and_expiry() {
        let m = Manifest { enabled: false, expire_after_ms: None };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"enabled":false,"expireAfterMs":null}"#);
    }

    #[test]
    fn error_body_shape() {
        let e = ErrorBody { status_code: 400, why: "Bad".into(), error_code: None };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"statusCode":400,"why":"Bad"}"#);
    }

    #[test]
    fn duration_round_trip() {
        let d = SimpleDuration::from_seconds(3725);
        assert_eq!(d, SimpleDuration { hours: 1, minutes: 2, seconds: 5 });
        assert_eq!(d.total_seconds(), 3725);
    }
}
