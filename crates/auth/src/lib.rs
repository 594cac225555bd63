//! JWT verification and issuing (RS256 only), key loading and generation.
//!
//! UCloud authenticates Core -> provider calls with RS256 JWTs signed by a per-provider key pair whose
//! public half is installed on the provider (provider-api.md §2.1–§2.3). The same key also signs the
//! provider's own access tokens, which is why verification always pins subject and role, not just the
//! signature. Signing ([`TokenSigner`]) exists only for the stand-in Core used in tests and demos.

mod keys;
mod sign;
mod verify;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub use keys::{generate_keypair, write_keypair, KeyError, KeyPair, PublicKey, MIN_RSA_BITS};
pub use sign::TokenSigner;
pub use verify::{
    TokenError, TokenVerifier, DEFAULT_LEEWAY_SECS, MAX_LEEWAY_SECS, MAX_TOKEN_BYTES,
};

/// Claims of UCloud tokens. Unknown claims are ignored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(
        rename = "principalType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub principal_type: Option<String>,
    /// Carried but never checked (UCloud sends `["all:write"]` and does not validate it either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// Reads `exp` from a JWT WITHOUT verifying it. Only for deciding when to refresh one's own access
/// token (a forged value can at worst cause an early or late refresh). `None` if unparsable.
pub fn unverified_expiry(token: &str) -> Option<i64> {
    let mut parts = token.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// Current Unix time in seconds (0 if the clock is before 1970, which then fails every `exp` check).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
