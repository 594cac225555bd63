//! Structurally broken input: garbage, oversize tokens and bad `Authorization` headers.

use auth::{TokenError, TokenVerifier};
use serde_json::json;

use crate::common::*;

#[test]
fn garbage_is_refused() {
    refused("", TokenError::Missing);
    for junk in [
        "garbage",
        "a.b",
        "a.b.c.d",
        "..",
        "...",
        "eyJhbGciOiJSUzI1NiJ9.eyJ9",
        "not base64!.abc.def",
        "eyJhbGciOiJSUzI1NiJ9.e30.sig=",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln+/",
        "e30.e30.e30",
        "bm90IGpzb24.e30.c2ln",
        " eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
    ] {
        let result = core_verifier().verify(junk);
        assert!(
            matches!(
                result,
                Err(TokenError::Malformed | TokenError::BadAlgorithm)
            ),
            "{junk}: {result:?}"
        );
    }
    let genuine = keys().signer.service_token(ISS, 600);
    let parts: Vec<&str> = genuine.split('.').collect();
    refused(&format!("{}.{}", parts[0], parts[1]), TokenError::Malformed);
    refused(
        &format!("{}.{}.", parts[0], parts[1]),
        TokenError::Malformed,
    );
    refused(
        &format!("{}..{}", parts[0], parts[2]),
        TokenError::Malformed,
    );
    refused(
        &format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
        TokenError::Malformed,
    );
    refused(
        &format!("{}.{}.{}%", parts[0], parts[1], parts[2]),
        TokenError::Malformed,
    );
    refused(
        &format!("{}.{}.{}", parts[0], b64("[1,2]"), parts[2]),
        TokenError::BadSignature,
    );
    refused(&format!("{genuine}.{}", parts[2]), TokenError::Malformed);
}

#[test]
fn oversize_tokens_are_refused_before_parsing() {
    let header = format!(
        r#"{{"alg":"RS256","typ":"JWT","pad":"{}"}}"#,
        "x".repeat(100_000)
    );
    refused(
        &assemble(&header, &service_claims(), "c2ln"),
        TokenError::TooLarge,
    );
    refused(&"a".repeat(8 * 1024 + 1), TokenError::TooLarge);
    refused(&"a".repeat(8 * 1024), TokenError::Malformed);
    let huge_claims = with(service_claims(), "pad", json!("y".repeat(9000)));
    refused(&rs256(&huge_claims), TokenError::TooLarge);
}

#[test]
fn bearer_header_variants() {
    let v = core_verifier();
    let token = keys().signer.service_token(ISS, 600);
    assert_eq!(v.verify_bearer(None), Err(TokenError::Missing));
    assert_eq!(v.verify_bearer(Some("")), Err(TokenError::Missing));
    assert_eq!(v.verify_bearer(Some("   ")), Err(TokenError::Missing));
    assert_eq!(v.verify_bearer(Some("Bearer ")), Err(TokenError::Missing));
    assert_eq!(v.verify_bearer(Some("Bearer")), Err(TokenError::Missing));
    assert_eq!(v.verify_bearer(Some("Basic x")), Err(TokenError::Malformed));
    assert_eq!(
        v.verify_bearer(Some("Basic dXNlcjpwYXNz")),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        v.verify_bearer(Some(&format!("Token {token}"))),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        v.verify_bearer(Some(&format!("Bearer{token}"))),
        Err(TokenError::Malformed)
    );
    assert_eq!(v.verify_bearer(Some(&token)), Err(TokenError::Malformed));
    assert_eq!(
        v.verify_bearer(Some(&format!("Bearer  {token}"))),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        v.verify_bearer(Some(&format!("Bearer {token} extra"))),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        v.verify_bearer(Some("Bearer garbage")),
        Err(TokenError::Malformed)
    );
    let forged = other_keys().signer.service_token(ISS, 600);
    assert_eq!(
        v.verify_bearer(Some(&format!("Bearer {forged}"))),
        Err(TokenError::BadSignature)
    );
    // Surrounding optional whitespace is not part of an HTTP field value.
    assert!(v.verify_bearer(Some(&format!(" Bearer {token}\t"))).is_ok());
}

#[test]
fn error_texts_do_not_leak_key_material() {
    let pair = &keys().pair;
    let der_fragment = &pair.public_der_base64[40..80];
    for e in [
        TokenError::Missing,
        TokenError::Malformed,
        TokenError::TooLarge,
        TokenError::BadAlgorithm,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::IssuedInFuture,
        TokenError::NotYetValid,
        TokenError::WrongIssuer,
        TokenError::WrongSubject,
        TokenError::WrongRole,
        TokenError::MissingClaim("iat"),
    ] {
        let text = e.to_string();
        assert!(!text.is_empty() && !text.contains(der_fragment), "{text}");
    }
    let _: TokenVerifier = core_verifier(); // the type is Clone + Debug and prints no key
    assert!(!format!("{:?}", core_verifier()).contains(der_fragment));
}
