//! Token issuing, for the stand-in Core (tests, demo). The module itself never signs: UCloud's
//! provider protocol has the Core mint every token.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;

use crate::keys::{parse_private_pem, KeyError};
use crate::{now_unix, Claims, PublicKey};

/// The exact header the Core emits (`{"alg":"RS256","typ":"JWT"}`, no `kid`).
const HEADER_JSON: &[u8] = br#"{"alg":"RS256","typ":"JWT"}"#;

/// Signs RS256 tokens with an RSA private key.
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    public: PublicKey,
    header_b64: String,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSigner({:?})", self.public)
    }
}

impl TokenSigner {
    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`); PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`) is also accepted.
    pub fn from_private_pem(pem: &str) -> Result<TokenSigner, KeyError> {
        let private = parse_private_pem(pem)?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| KeyError::InvalidRsa(e.to_string()))?;
        let signer = TokenSigner {
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            public: PublicKey::from_rsa(&private.to_public_key()),
            header_b64: URL_SAFE_NO_PAD.encode(HEADER_JSON),
        };
        // Sign once now so that `sign` (infallible by signature) can only fail on a broken invariant.
        signer
            .try_sign_message(b"probe")
            .map_err(|e| KeyError::InvalidRsa(format!("test signature failed: {e}")))?;
        Ok(signer)
    }

    /// The matching public key, e.g. to build a [`crate::TokenVerifier`] in the stand-in Core.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// RS256 token with header `{"alg":"RS256","typ":"JWT"}` and exactly these claims.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("Claims serialise to JSON infallibly");
        let message = format!("{}.{}", self.header_b64, URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .try_sign_message(message.as_bytes())
            .expect("RS256 signing with a key that signed successfully at construction");
        format!("{message}.{signature}")
    }

    /// The Core's token for calling this provider:
    /// `{"sub":"_UCloud","role":"SERVICE","principalType":"service","iss":..,"aud":["all:write"],"iat":now,"exp":now+lifetime}`.
    pub fn service_token(&self, issuer: &str, lifetime_secs: i64) -> String {
        self.sign(&standard_claims(
            "_UCloud",
            "SERVICE",
            "service",
            issuer,
            lifetime_secs,
        ))
    }

    /// The provider's access token, as `auth/providers/refresh` returns it:
    /// `{"sub":"#P_<id>","role":"PROVIDER","principalType":"provider",...}`.
    pub fn provider_token(&self, provider_id: &str, issuer: &str, lifetime_secs: i64) -> String {
        let sub = format!("#P_{provider_id}");
        self.sign(&standard_claims(
            &sub,
            "PROVIDER",
            "provider",
            issuer,
            lifetime_secs,
        ))
    }

    fn try_sign_message(&self, message: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::crypto::sign(message, &self.key, Algorithm::RS256)
    }
}

fn standard_claims(
    sub: &str,
    role: &str,
    principal_type: &str,
    issuer: &str,
    lifetime_secs: i64,
) -> Claims {
    let now = now_unix();
    Claims {
        sub: sub.to_string(),
        role: role.to_string(),
        iss: issuer.to_string(),
        iat: now,
        exp: now.saturating_add(lifetime_secs),
        principal_type: Some(principal_type.to_string()),
        aud: Some(serde_json::json!(["all:write"])),
    }
}
