//! Forged tokens: every one must be refused with the right reason.

use auth::TokenError;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::common::*;

#[test]
fn alg_none_is_refused() {
    let claims = service_claims();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        refused(&assemble(&header, &claims, ""), TokenError::BadAlgorithm);
        // With a genuine-looking signature pasted on.
        let genuine = keys().signer.service_token(ISS, 600);
        let sig = genuine.rsplit('.').next().unwrap();
        refused(&assemble(&header, &claims, sig), TokenError::BadAlgorithm);
    }
    refused(
        &assemble(r#"{"typ":"JWT"}"#, &claims, "c2ln"),
        TokenError::BadAlgorithm,
    );
    refused(
        &assemble(r#"{"alg":null}"#, &claims, "c2ln"),
        TokenError::BadAlgorithm,
    );
    refused(
        &assemble(r#"{"alg":["RS256"]}"#, &claims, "c2ln"),
        TokenError::BadAlgorithm,
    );
}

#[test]
fn hmac_key_confusion_is_refused() {
    let pair = &keys().pair;
    let claims = service_claims();
    for secret in [
        pair.public_spki_pem.as_bytes(),
        pair.public_der_base64.as_bytes(),
    ] {
        let key = EncodingKey::from_secret(secret);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            refused(&sign_with(alg, &claims, &key), TokenError::BadAlgorithm);
        }
        // Header claims RS256 but the "signature" is an HMAC over the public key.
        let message = format!(
            "{}.{}",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims.to_string())
        );
        let mac = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        refused(&format!("{message}.{mac}"), TokenError::BadSignature);
    }
}

#[test]
fn wrong_key_and_wrong_rsa_algorithms_are_refused() {
    let claims = service_claims();
    refused(
        &sign_with(Algorithm::RS256, &claims, &other_keys().encoding),
        TokenError::BadSignature,
    );
    refused(
        &other_keys().signer.service_token(ISS, 600),
        TokenError::BadSignature,
    );
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
    ] {
        refused(
            &sign_with(alg, &claims, &keys().encoding),
            TokenError::BadAlgorithm,
        );
    }
    // PS256 signature relabelled as RS256.
    let ps = sign_with(Algorithm::PS256, &claims, &keys().encoding);
    let sig = ps.rsplit('.').next().unwrap();
    refused(
        &assemble(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, sig),
        TokenError::BadSignature,
    );
}

#[test]
fn tampered_payload_and_embedded_jwk_are_refused() {
    let genuine = keys().signer.provider_token(PROVIDER, ISS, 600);
    let parts: Vec<&str> = genuine.split('.').collect();
    // Provider token re-labelled as the Core, signature kept.
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(service_claims().to_string()),
        parts[2]
    );
    refused(&forged, TokenError::BadSignature);
    // Attacker-signed token that carries the attacker's key in the header (CVE-2018-0114 style).
    let header = r#"{"alg":"RS256","typ":"JWT","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}"#;
    let message = format!("{}.{}", b64(header), b64(service_claims().to_string()));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &other_keys().encoding, Algorithm::RS256)
            .unwrap();
    refused(&format!("{message}.{sig}"), TokenError::BadSignature);
    // A `crit` header extension we cannot honour.
    refused(
        &assemble(
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            &service_claims(),
            parts[2],
        ),
        TokenError::Malformed,
    );
}

#[test]
fn wrong_claims_are_refused() {
    let c = service_claims();
    refused(
        &rs256(&with(c.clone(), "sub", json!("#P_slurm-test"))),
        TokenError::WrongSubject,
    );
    refused(
        &rs256(&with(c.clone(), "sub", json!("_ucloud"))),
        TokenError::WrongSubject,
    );
    refused(
        &rs256(&with(c.clone(), "role", json!("PROVIDER"))),
        TokenError::WrongRole,
    );
    refused(
        &rs256(&with(c.clone(), "role", json!("service"))),
        TokenError::WrongRole,
    );
    refused(
        &rs256(&with(c.clone(), "role", json!("ADMIN"))),
        TokenError::WrongRole,
    );
    refused(
        &rs256(&with(c.clone(), "iss", json!("evil.example"))),
        TokenError::WrongIssuer,
    );
    refused(
        &rs256(&with(c.clone(), "iss", json!(["cloud.sdu.dk", "evil"]))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c.clone(), "role", json!(["SERVICE"]))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c.clone(), "iat", json!("now"))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c.clone(), "iat", json!(1.5e9))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c.clone(), "exp", json!((now() + 600) as f64 + 0.5))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c.clone(), "principalType", json!(7))),
        TokenError::Malformed,
    );
    refused(
        &rs256(&with(c, "nbf", json!(now() + 3600))),
        TokenError::NotYetValid,
    );
}

#[test]
fn missing_claims_are_refused() {
    for claim in ["sub", "role", "iss", "iat", "exp"] {
        refused(
            &rs256(&without(service_claims(), claim)),
            TokenError::MissingClaim(claim),
        );
        refused(
            &rs256(&with(service_claims(), claim, Value::Null)),
            TokenError::MissingClaim(claim),
        );
    }
}

#[test]
fn expired_and_future_tokens_are_refused() {
    let n = now();
    refused(
        &rs256(&with(service_claims(), "exp", json!(n - 3600))),
        TokenError::Expired,
    );
    // jsonwebtoken treats a negative NumericDate as absent.
    let negative = core_verifier().verify(&rs256(&with(service_claims(), "exp", json!(-1))));
    assert!(
        matches!(
            negative,
            Err(TokenError::MissingClaim("exp") | TokenError::Malformed)
        ),
        "{negative:?}"
    );
    refused(
        &rs256(&with(service_claims(), "iat", json!(n + 3600))),
        TokenError::IssuedInFuture,
    );
    refused(&keys().signer.service_token(ISS, -120), TokenError::Expired);
}
