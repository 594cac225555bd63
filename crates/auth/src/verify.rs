//! Verification of UCloud RS256 access tokens.
//!
//! The Core signs both its own tokens (`_UCloud`/`SERVICE`) and the provider's access tokens
//! (`#P_<id>`/`PROVIDER`) with the same per-provider key, so a valid signature alone proves nothing
//! about who is calling: subject and role are always pinned. Checks are layered: our own structural and
//! `alg` checks first, then jsonwebtoken with a strict `Validation`, then our own claim checks again by
//! name (so that a library default changing cannot silently widen what is accepted).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{now_unix, Claims, PublicKey};

/// Tokens longer than this are refused before any decoding (UCloud tokens are well under 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default allowed clock skew in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Upper bound for [`TokenVerifier::with_leeway`]; larger values are clamped (they would make `exp`
/// meaningless and could overflow time arithmetic).
pub const MAX_LEEWAY_SECS: u64 = 3600;

/// How many verified tokens a verifier remembers (the Core holds one at a time, two around a refresh).
const VERIFIED_CAPACITY: usize = 16;

const CORE_SUBJECT: &str = "_UCloud";
const CORE_ROLE: &str = "SERVICE";
const PROVIDER_ROLE: &str = "PROVIDER";

/// Why a token was refused. The Display text is safe to return to a caller (no key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was supplied")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is too large")]
    TooLarge,
    #[error("the token is not signed with RS256")]
    BadAlgorithm,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `nbf` lies in the future (UCloud does not send `nbf`, but honour it if present).
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by an unexpected issuer")]
    WrongIssuer,
    #[error("the token's subject may not call this endpoint")]
    WrongSubject,
    #[error("the token's role may not call this endpoint")]
    WrongRole,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
}

/// Verifies tokens for one expected principal (subject + role) against one key and issuer.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    key: PublicKey,
    issuer: String,
    subject: String,
    role: &'static str,
    leeway: u64,
    validation: Validation,
    verified: Arc<Verified>,
}

/// Tokens this verifier already verified in full, with their claims. The Core reuses one token for
/// minutes, and an RSA verification costs ~170 µs here, twice per user call (server and instance). Only
/// a token that passed every check gets in; a repeat must be the same token (its SHA-256, so a lookup's
/// timing tells nothing about a remembered token's bytes), and every time-bound check (`exp`, `iat`,
/// `nbf`) runs again on each use.
#[derive(Debug, Default)]
struct Verified(Mutex<VecDeque<Remembered>>);

#[derive(Debug)]
struct Remembered {
    digest: [u8; 32],
    map: Map<String, Value>,
    claims: Claims,
}

impl Verified {
    /// The remembered token's claims, if `check` (the time-bound checks) still passes them.
    fn get(&self, digest: &[u8; 32], check: impl FnOnce(&Map<String, Value>) -> Result<(), TokenError>) -> Option<Result<Claims, TokenError>> {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().find(|r| &r.digest == digest).map(|r| check(&r.map).map(|()| r.claims.clone()))
    }

    fn put(&self, digest: [u8; 32], map: Map<String, Value>, claims: Claims) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_CAPACITY {
            entries.pop_back();
        }
        entries.push_front(Remembered { digest, map, claims });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl TokenVerifier {
    /// Core -> provider calls: `sub == "_UCloud"`, `role == "SERVICE"`.
    pub fn for_core_calls(key: PublicKey, issuer: &str) -> TokenVerifier {
        TokenVerifier::new(key, issuer, CORE_SUBJECT.to_string(), CORE_ROLE)
    }

    /// Provider -> Core calls (used by the stand-in Core): `sub == "#P_<provider_id>"`, `role == "PROVIDER"`.
    pub fn for_provider_calls(key: PublicKey, issuer: &str, provider_id: &str) -> TokenVerifier {
        TokenVerifier::new(key, issuer, format!("#P_{provider_id}"), PROVIDER_ROLE)
    }

    fn new(key: PublicKey, issuer: &str, subject: String, role: &'static str) -> TokenVerifier {
        let validation = strict_validation(issuer, &subject, DEFAULT_LEEWAY_SECS);
        TokenVerifier {
            key,
            issuer: issuer.to_string(),
            subject,
            role,
            leeway: DEFAULT_LEEWAY_SECS,
            validation,
            verified: Arc::default(),
        }
    }

    /// Allowed clock skew for `iat` in the future, `exp` and `nbf` (default 30 s, at most 3600 s).
    pub fn with_leeway(mut self, seconds: u64) -> TokenVerifier {
        self.leeway = seconds.min(MAX_LEEWAY_SECS);
        self.validation.leeway = self.leeway;
        // What was accepted under the old leeway is not known to pass under the new one.
        self.verified = Arc::default();
        self
    }

    /// The subject this verifier accepts (e.g. `_UCloud` or `#P_<id>`).
    pub fn expected_subject(&self) -> &str {
        &self.subject
    }

    /// Verifies an `Authorization` header value, which must be `Bearer <jwt>` (scheme case-insensitive).
    /// No header, an empty one or an empty token (the Core sends `Bearer ` when its own refresh failed)
    /// is [`TokenError::Missing`]; any other scheme or shape is [`TokenError::Malformed`].
    pub fn verify_bearer(&self, authorization: Option<&str>) -> Result<Claims, TokenError> {
        let value = authorization.unwrap_or("").trim_matches([' ', '\t']);
        if value.is_empty() {
            return Err(TokenError::Missing);
        }
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Malformed);
        }
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.chars().any(|c| c.is_whitespace()) {
            return Err(TokenError::Malformed);
        }
        self.verify(token)
    }

    /// Verifies a bare JWT and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, now_unix())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(remembered) = self.verified.get(&digest, |map| self.check_claims(map, now)) {
            return remembered;
        }
        check_shape_and_alg(token)?;
        let data = jsonwebtoken::decode::<Value>(token, &self.key.decoding, &self.validation)
            .map_err(map_library_error)?;
        let Value::Object(map) = data.claims else {
            return Err(TokenError::Malformed);
        };
        self.check_claims(&map, now)?;
        let claims: Claims = serde_json::from_value(Value::Object(map.clone())).map_err(|_| TokenError::Malformed)?;
        self.verified.put(digest, map, claims.clone());
        Ok(claims)
    }

    /// Our own claim checks, by name, independent of what the library already did.
    fn check_claims(&self, map: &Map<String, Value>, now: i64) -> Result<(), TokenError> {
        let leeway = self.leeway as i64;
        let iss = str_claim(map, "iss")?;
        let sub = str_claim(map, "sub")?;
        let exp = int_claim(map, "exp")?;
        let iat = int_claim(map, "iat")?;
        let role = str_claim(map, "role")?;

        if iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if exp.saturating_add(leeway) < now {
            return Err(TokenError::Expired);
        }
        // Deliberately no maximum age: the Core reuses a token until < 3 min of its 10 min remain.
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(nbf) = map.get("nbf").filter(|v| !v.is_null()) {
            let nbf = nbf.as_i64().ok_or(TokenError::Malformed)?;
            if nbf > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        if sub != self.subject {
            return Err(TokenError::WrongSubject);
        }
        if role != self.role {
            return Err(TokenError::WrongRole);
        }
        Ok(())
    }
}

fn strict_validation(issuer: &str, subject: &str, leeway: u64) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms = vec![Algorithm::RS256];
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    v.leeway = leeway;
    v.reject_tokens_expiring_in_less_than = 0;
    v.validate_exp = true;
    // Off by default in jsonwebtoken; on here so an `nbf`, if ever sent, is honoured.
    v.validate_nbf = true;
    // UCloud does not check `aud` (the Core sends ["all:write"]); jsonwebtoken would otherwise refuse
    // every token carrying an `aud` because we configure no expected audience.
    v.validate_aud = false;
    v.aud = None;
    v.set_issuer(&[issuer]);
    v.sub = Some(subject.to_string());
    v
}

/// Structural checks and the `alg` pin, done before the library sees the token: exactly three
/// base64url segments, and a JSON header whose `alg` is exactly "RS256" with no `crit` extensions.
fn check_shape_and_alg(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || !is_b64url(header) || !is_b64url(payload) || !is_b64url(signature) {
        return Err(TokenError::Malformed);
    }
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        _ => return Err(TokenError::BadAlgorithm),
    }
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we understand none.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    if payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(())
}

fn map_library_error(err: jsonwebtoken::errors::Error) -> TokenError {
    match err.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::BadAlgorithm,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidSubject => TokenError::WrongSubject,
        ErrorKind::MissingRequiredClaim(name) => TokenError::MissingClaim(static_claim_name(name)),
        _ => TokenError::Malformed,
    }
}

fn static_claim_name(name: &str) -> &'static str {
    match name {
        "exp" => "exp",
        "iss" => "iss",
        "sub" => "sub",
        "nbf" => "nbf",
        "aud" => "aud",
        _ => "unknown",
    }
}

fn present<'a>(map: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, TokenError> {
    match map.get(name) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(name)),
        Some(v) => Ok(v),
    }
}

fn str_claim<'a>(map: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    present(map, name)?.as_str().ok_or(TokenError::Malformed)
}

/// NumericDate as an integer; floats and strings are refused rather than rounded.
fn int_claim(map: &Map<String, Value>, name: &'static str) -> Result<i64, TokenError> {
    present(map, name)?.as_i64().ok_or(TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_keypair, TokenSigner};

    #[test]
    fn a_remembered_token_is_still_checked_for_time_and_only_verified_tokens_are_remembered() {
        let pair = generate_keypair();
        let signer = TokenSigner::from_private_pem(&pair.private_pkcs8_pem).unwrap();
        let verifier = TokenVerifier::for_core_calls(signer.public_key(), "cloud.sdu.dk");
        let token = signer.service_token("cloud.sdu.dk", 600);
        let now = now_unix();

        let first = verifier.verify_at(&token, now).unwrap();
        assert_eq!(verifier.verified.len(), 1);
        assert_eq!(verifier.verify_at(&token, now + 60).unwrap(), first);
        assert_eq!(verifier.verified.len(), 1, "a repeat is a hit, not a second entry");
        // Past `exp` (and the leeway) the remembered token is refused like any other.
        assert_eq!(verifier.verify_at(&token, now + 600 + DEFAULT_LEEWAY_SECS as i64 + 1), Err(TokenError::Expired));

        // The same token with its signature altered is verified afresh, and refused.
        let (message, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{message}.{flipped}{}", &signature[1..]);
        assert_eq!(verifier.verify_at(&forged, now), Err(TokenError::BadSignature));
        // A provider token under the same key is refused by a Core-call verifier and never remembered.
        let provider = signer.provider_token("p", "cloud.sdu.dk", 600);
        assert!(verifier.verify_at(&provider, now).is_err());
        assert_eq!(verifier.verified.len(), 1);

        // Bounded: old tokens make room for new ones.
        for lifetime in 0..(VERIFIED_CAPACITY as i64 + 4) {
            verifier.verify_at(&signer.service_token("cloud.sdu.dk", 300 + lifetime), now).unwrap();
        }
        assert_eq!(verifier.verified.len(), VERIFIED_CAPACITY);
    }
}
