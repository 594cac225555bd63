//! Transfer tokens (lead's decision 4): stateless, HMAC-SHA256 over the claims with a per-uid key. The
//! server derives the key from a secret that survives restarts, so a token issued by one instance run
//! still works after the instance restarts (an interrupted upload resumes), and a token made with one
//! uid's key is worthless to every other uid's instance.
//!
//! Format: `base64url(JSON claims) "." base64url(HMAC(key, "ucim-transfer-v1." + first part))`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const UPLOAD_LIFETIME_SECS: i64 = 7 * 24 * 3600;
pub const DOWNLOAD_LIFETIME_SECS: i64 = 48 * 3600;
/// Anything longer is refused before any work.
pub const MAX_TOKEN_LEN: usize = 8192;
const DOMAIN: &[u8] = b"ucim-transfer-v1.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "up")]
    Upload,
    #[serde(rename = "down")]
    Download,
}

/// What a token allows. Paths were validated against the drive when the token was made; they are
/// resolved beneath `root` by the kernel again on every use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "k")]
    pub kind: Kind,
    /// The UCloud user the Core asked for (logs, audit).
    #[serde(rename = "u")]
    pub user: String,
    /// The UCloud drive id.
    #[serde(rename = "d")]
    pub drive: String,
    /// The trusted part of the drive's root (from configuration, resolved normally).
    #[serde(rename = "r")]
    pub root: String,
    /// The rest of the drive root beneath `root` (filled from UCloud names, resolved beneath `root`
    /// without following symlinks, like `path`).
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
    /// Relative to the drive root; the final name (conflicts were resolved when the token was made).
    #[serde(rename = "p")]
    pub path: String,
    /// Upload only: `FILE` or `FOLDER`.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub upload_type: Option<String>,
    /// Upload only: the conflict policy asked for.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Upload only: `WEBSOCKET_V2` or `CHUNKED`.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Random, so two sessions for one path never share temporary files.
    #[serde(rename = "n")]
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is for another kind of transfer")]
    WrongKind,
}

/// A per-uid signing key.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The server's derivation: HMAC(secret, "ucim-transfer-key-v1:" uid).
    pub fn derive(secret: &[u8], uid: u32) -> TokenKey {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"ucim-transfer-key-v1:");
        mac.update(uid.to_string().as_bytes());
        TokenKey(mac.finalize().into_bytes().into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<TokenKey> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut k = [0u8; 32];
        for (i, byte) in k.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenKey(k))
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(payload.as_bytes());
        mac
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", B64.encode(tag))
    }

    /// Checks signature (constant time), then kind and expiry. Returns the claims and the signature
    /// bytes (a session id for temporary names).
    pub fn verify(&self, token: &str, kind: Kind, now_secs: i64) -> Result<(Claims, Vec<u8>), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let json = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.kind != kind {
            return Err(TokenError::WrongKind);
        }
        if now_secs >= claims.expires {
            return Err(TokenError::Expired);
        }
        Ok((claims, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(kind: Kind, expires: i64) -> Claims {
        Claims {
            kind,
            user: "alice#1".into(),
            drive: "12".into(),
            root: "/home/alice".into(),
            sub: String::new(),
            path: "data/x.bin".into(),
            upload_type: Some("FILE".into()),
            policy: Some("RENAME".into()),
            protocol: Some("WEBSOCKET_V2".into()),
            expires,
            nonce: "n1".into(),
        }
    }

    #[test]
    fn sign_and_verify() {
        let key = TokenKey::derive(b"secret", 1001);
        let c = claims(Kind::Upload, 2000);
        let t = key.sign(&c);
        let (back, session) = key.verify(&t, Kind::Upload, 1000).unwrap();
        assert_eq!(back, c);
        assert_eq!(session.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'), "URL-safe");
    }

    #[test]
    fn refusals() {
        let key = TokenKey::derive(b"secret", 1001);
        let t = key.sign(&claims(Kind::Upload, 2000));
        assert_eq!(key.verify(&t, Kind::Upload, 2000), Err(TokenError::Expired));
        assert_eq!(key.verify(&t, Kind::Download, 1000), Err(TokenError::WrongKind));
        // Another uid's key, another secret.
        assert_eq!(TokenKey::derive(b"secret", 1002).verify(&t, Kind::Upload, 1000), Err(TokenError::BadSignature));
        assert_eq!(TokenKey::derive(b"other", 1001).verify(&t, Kind::Upload, 1000), Err(TokenError::BadSignature));
        // A tampered path (re-encoded claims, old signature).
        let (_, tag) = t.split_once('.').unwrap();
        let mut evil = claims(Kind::Upload, 2000);
        evil.path = "../bob".into();
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&evil).unwrap()));
        assert_eq!(key.verify(&forged, Kind::Upload, 1000), Err(TokenError::BadSignature));
        // A longer expiry.
        let mut later = claims(Kind::Upload, 999_999);
        later.expires = 999_999;
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&later).unwrap()));
        assert_eq!(key.verify(&forged, Kind::Upload, 1000), Err(TokenError::BadSignature));
        for junk in ["", ".", "abc", "abc.def", "a.b.c", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(key.verify(junk, Kind::Upload, 0).is_err(), "{junk:?}");
        }
        // A truncated signature is not a prefix match.
        assert!(key.verify(&t[..t.len() - 2], Kind::Upload, 1000).is_err());
    }

    #[test]
    fn key_hex_round_trip_and_derivation_is_stable() {
        let k = TokenKey::derive(b"s", 7);
        assert_eq!(TokenKey::from_hex(&k.to_hex()).unwrap().0, k.0);
        assert_eq!(TokenKey::derive(b"s", 7).0, k.0);
        assert_ne!(TokenKey::derive(b"s", 8).0, k.0);
        assert!(TokenKey::from_hex("zz").is_none());
        assert!(TokenKey::from_hex(&"g".repeat(64)).is_none());
    }
}
