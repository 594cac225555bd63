//! Shared fixtures. RSA key generation is slow, so each test binary generates its keys once.
#![allow(dead_code)]

use std::sync::OnceLock;

use auth::{generate_keypair, KeyPair, PublicKey, TokenError, TokenSigner, TokenVerifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};

pub const ISS: &str = "cloud.sdu.dk";
pub const PROVIDER: &str = "slurm-test";

pub struct Keys {
    pub pair: KeyPair,
    pub signer: TokenSigner,
    /// The private key as jsonwebtoken wants it, for forging tokens with arbitrary headers/claims.
    pub encoding: EncodingKey,
}

fn make_keys() -> Keys {
    let pair = generate_keypair();
    let signer = TokenSigner::from_private_pem(&pair.private_pkcs8_pem).expect("signer");
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pair.private_pkcs8_pem).expect("pkcs8");
    let encoding = EncodingKey::from_rsa_der(private.to_pkcs1_der().expect("pkcs1").as_bytes());
    Keys {
        pair,
        signer,
        encoding,
    }
}

/// The Core's key for this provider.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(make_keys)
}

/// Somebody else's key.
pub fn other_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(make_keys)
}

pub fn public_key() -> PublicKey {
    PublicKey::parse(&keys().pair.public_der_base64).expect("public key")
}

pub fn core_verifier() -> TokenVerifier {
    TokenVerifier::for_core_calls(public_key(), ISS)
}

pub fn provider_verifier() -> TokenVerifier {
    TokenVerifier::for_provider_calls(public_key(), ISS, PROVIDER)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims exactly as the Core sends them to a provider, as JSON so tests can remove or alter fields.
pub fn service_claims() -> Value {
    let now = now();
    json!({
        "sub": "_UCloud", "role": "SERVICE", "principalType": "service", "iss": ISS,
        "aud": ["all:write"], "iat": now, "exp": now + 600
    })
}

pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

pub fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Signs arbitrary claims with the right key using `alg`.
pub fn sign_with(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("encode")
}

/// RS256 with the right key and arbitrary claims.
pub fn rs256(claims: &Value) -> String {
    sign_with(Algorithm::RS256, claims, &keys().encoding)
}

/// Assembles a token from a raw header JSON text, claims and a raw signature segment.
pub fn assemble(header: &str, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(claims.to_string()), signature)
}

/// Asserts that the Core-call verifier refuses `token` for exactly the `expected` reason.
#[track_caller]
pub fn refused(token: &str, expected: TokenError) {
    assert_eq!(
        core_verifier().verify(token),
        Err(expected),
        "token: {token:.200}"
    );
}
