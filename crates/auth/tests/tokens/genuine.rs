//! Genuine tokens are accepted, and only by the verifier for their principal.

use auth::{Claims, TokenError};
use serde_json::json;

use crate::common::*;

#[test]
fn genuine_service_token_verifies() {
    let token = keys().signer.service_token(ISS, 600);
    let claims = core_verifier().verify(&token).expect("genuine token");
    assert_eq!(claims.sub, "_UCloud");
    assert_eq!(claims.role, "SERVICE");
    assert_eq!(claims.iss, ISS);
    assert_eq!(claims.principal_type.as_deref(), Some("service"));
    assert_eq!(claims.aud, Some(json!(["all:write"])));
    assert_eq!(claims.exp - claims.iat, 600);
}

#[test]
fn core_shaped_token_with_seven_minute_old_iat_verifies() {
    // The Core reuses its token until < 3 minutes remain.
    let n = now();
    let claims = with(
        with(service_claims(), "iat", json!(n - 420)),
        "exp",
        json!(n + 180),
    );
    let got = core_verifier()
        .verify(&rs256(&claims))
        .expect("old iat is fine");
    assert_eq!(got.iat, n - 420);
}

#[test]
fn unknown_claims_and_string_audience_are_ignored() {
    let claims = with(
        with(service_claims(), "aud", json!("something-else")),
        "jti",
        json!("x"),
    );
    assert!(core_verifier().verify(&rs256(&claims)).is_ok());
    let claims = without(without(service_claims(), "aud"), "principalType");
    let got = core_verifier().verify(&rs256(&claims)).unwrap();
    assert_eq!((got.aud, got.principal_type), (None, None));
}

#[test]
fn signer_sign_roundtrips_exact_claims() {
    let claims = Claims {
        sub: "_UCloud".into(),
        role: "SERVICE".into(),
        iss: ISS.into(),
        iat: now() - 5,
        exp: now() + 100,
        principal_type: None,
        aud: None,
    };
    assert_eq!(
        core_verifier().verify(&keys().signer.sign(&claims)),
        Ok(claims)
    );
}

#[test]
fn provider_and_service_tokens_are_not_interchangeable() {
    let provider_token = keys().signer.provider_token(PROVIDER, ISS, 600);
    let service_token = keys().signer.service_token(ISS, 600);

    let got = provider_verifier()
        .verify(&provider_token)
        .expect("provider token");
    assert_eq!(got.sub, format!("#P_{PROVIDER}"));
    assert_eq!(got.role, "PROVIDER");
    assert_eq!(got.principal_type.as_deref(), Some("provider"));

    assert_eq!(
        core_verifier().verify(&provider_token),
        Err(TokenError::WrongSubject)
    );
    assert_eq!(
        provider_verifier().verify(&service_token),
        Err(TokenError::WrongSubject)
    );
    // Another provider's token is refused too.
    let other = keys().signer.provider_token("someone-else", ISS, 600);
    assert_eq!(
        provider_verifier().verify(&other),
        Err(TokenError::WrongSubject)
    );
}

#[test]
fn leeway_applies_to_exp_and_iat() {
    let n = now();
    let just_expired = with(service_claims(), "exp", json!(n - 10));
    assert!(
        core_verifier().verify(&rs256(&just_expired)).is_ok(),
        "within default 30 s"
    );
    assert_eq!(
        core_verifier().with_leeway(0).verify(&rs256(&just_expired)),
        Err(TokenError::Expired)
    );
    let slightly_future = with(service_claims(), "iat", json!(n + 10));
    assert!(core_verifier().verify(&rs256(&slightly_future)).is_ok());
    assert_eq!(
        core_verifier()
            .with_leeway(0)
            .verify(&rs256(&slightly_future)),
        Err(TokenError::IssuedInFuture)
    );
    // Absurd leeways are clamped rather than overflowing.
    let long_expired = with(service_claims(), "exp", json!(n - 7200));
    assert_eq!(
        core_verifier()
            .with_leeway(u64::MAX)
            .verify(&rs256(&long_expired)),
        Err(TokenError::Expired)
    );
}

#[test]
fn bearer_header_accepts_case_insensitive_scheme() {
    let token = keys().signer.service_token(ISS, 600);
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
    ] {
        assert!(
            core_verifier().verify_bearer(Some(&header)).is_ok(),
            "{header:.20}"
        );
    }
}
