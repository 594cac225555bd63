//! Key parsing, key files, signer output and `unverified_expiry`.

mod common;

use auth::{
    unverified_expiry, write_keypair, KeyError, PublicKey, TokenError, TokenSigner, TokenVerifier,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, LineEnding};
use serde_json::json;

const EC_P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpeny9qgTfs1st0fAYQUOmqAghz/X
bqkrPnPMKnhNbXNPkWuOXmE4woH146fAZy4u5/BSfLFl9hnuC6dtJ9ztyQ==
-----END PUBLIC KEY-----
";

const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAZtsNPA0w5P31DoM+qeZbPfbPMrDAI+qkfEiq5ae2yRY=
-----END PUBLIC KEY-----
";

const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCe++6143VQhH4hWwwioHlKsujr
4odz0q6yDk3u3+hts6w+wq9rZPn7tD/LKPgyG3rGjNsTKUEe2qO4aidjZ7B15Xja
1ZXvXN/SvGm34kSIdqpwm7mru9sTDnscWN+XbO/jzUNucRXA1Y3rar1yufmrygz1
N9foI1JIOUy/zsjMGQIDAQAB
-----END PUBLIC KEY-----
";

fn pkcs1_public_pem() -> String {
    let public = rsa::RsaPublicKey::from_public_key_pem(&keys().pair.public_spki_pem).unwrap();
    public.to_pkcs1_pem(LineEnding::CRLF).unwrap()
}

fn verifies_service_token(key: PublicKey) -> bool {
    let token = keys().signer.service_token(ISS, 600);
    TokenVerifier::for_core_calls(key, ISS)
        .verify(&token)
        .is_ok()
}

#[test]
fn all_accepted_public_key_forms_verify_the_same_token() {
    let pair = &keys().pair;
    let der = &pair.public_der_base64;
    let wrapped: String = der
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let forms = [
        pair.public_spki_pem.clone(),
        der.clone(),
        format!("  {der}\n"),
        wrapped.clone(),
        format!("\u{feff}{wrapped}"),
        pkcs1_public_pem(),
        format!("comment before the block\n{}", pair.public_spki_pem),
    ];
    for form in forms {
        let key = PublicKey::parse(&form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(key.bits(), 2048);
        assert!(verifies_service_token(key), "{form:?}");
    }
    // A key parsed from a different pair refuses the same token.
    let other = PublicKey::parse(&other_keys().pair.public_spki_pem).unwrap();
    assert!(!verifies_service_token(other));
}

#[test]
fn raw_pkcs1_der_is_tolerated() {
    let public = rsa::RsaPublicKey::from_public_key_pem(&keys().pair.public_spki_pem).unwrap();
    let der = STANDARD.encode(public.to_pkcs1_der().unwrap().as_bytes());
    assert!(verifies_service_token(PublicKey::parse(&der).unwrap()));
}

#[test]
fn bad_public_keys_are_refused_with_clear_errors() {
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("blank", " \n\t ".into()),
        ("garbage", "this is not a key".into()),
        (
            "base64 but not DER",
            STANDARD.encode(b"hello world, not DER at all"),
        ),
        (
            "truncated DER",
            keys().pair.public_der_base64[..200].to_string(),
        ),
        ("EC", EC_P256_PEM.into()),
        ("Ed25519", ED25519_PEM.into()),
        ("1024-bit RSA", RSA_1024_PEM.into()),
        (
            "1024-bit RSA raw",
            RSA_1024_PEM
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect(),
        ),
        ("private key", keys().pair.private_pkcs8_pem.clone()),
        (
            "certificate",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ),
        ("no END", "-----BEGIN PUBLIC KEY-----\nMIIB\n".into()),
        ("two blocks", format!("{0}{0}", keys().pair.public_spki_pem)),
        (
            "PEM headers",
            "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nMIIB\n-----END PUBLIC KEY-----"
                .into(),
        ),
    ];
    for (name, text) in cases {
        let err = PublicKey::parse(&text).expect_err(name);
        let msg = err.to_string();
        assert!(!msg.is_empty(), "{name}");
        match name {
            "empty" | "blank" => assert!(matches!(err, KeyError::Empty), "{name}: {err:?}"),
            "EC" | "Ed25519" => {
                assert!(matches!(err, KeyError::NotRsa(_)), "{name}: {err:?}");
                assert!(msg.contains(name), "{msg}");
            }
            "1024-bit RSA" | "1024-bit RSA raw" => {
                assert!(matches!(err, KeyError::TooSmall(1024)), "{name}: {err:?}");
                assert!(msg.contains("1024") && msg.contains("2048"), "{msg}");
            }
            "private key" | "certificate" => {
                assert!(
                    matches!(err, KeyError::UnsupportedPem { .. }),
                    "{name}: {err:?}"
                )
            }
            _ => {}
        }
    }
}

#[test]
fn signer_accepts_pkcs8_and_pkcs1_and_refuses_others() {
    let pair = &keys().pair;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pair.private_pkcs8_pem).unwrap();
    let pkcs1 = private.to_pkcs1_pem(LineEnding::LF).unwrap();
    let signer = TokenSigner::from_private_pem(&pkcs1).expect("pkcs1 private key");
    assert!(core_verifier()
        .verify(&signer.service_token(ISS, 60))
        .is_ok());
    assert!(verifies_service_token(signer.public_key()));

    assert!(matches!(
        TokenSigner::from_private_pem(""),
        Err(KeyError::Empty)
    ));
    assert!(TokenSigner::from_private_pem("nope").is_err());
    assert!(matches!(
        TokenSigner::from_private_pem(&pair.public_spki_pem),
        Err(KeyError::UnsupportedPem { .. })
    ));
    let ec_private = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglFXtD5B+TLn3hgno\nraIg86rhZES1Eit0aWKbMNaFUQihRANCAASl6fL2qBN+zWy3R8BhBQ6aoCCHP9du\nqSs+c8wqeE1tc0+Ra45eYTjCgfXjp8BnLi7n8FJ8sWX2Ge4Lp20n3O3J\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        TokenSigner::from_private_pem(ec_private),
        Err(KeyError::NotRsa(_))
    ));
    // Debug output never contains the key.
    assert!(
        !format!("{:?} {:?}", keys().signer, keys().pair).contains(&pair.private_pkcs8_pem[40..80])
    );
}

#[test]
fn signed_tokens_have_the_core_header_and_claims() {
    let token = keys().signer.service_token(ISS, 600);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
        br#"{"alg":"RS256","typ":"JWT"}"#
    );
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now()).abs() <= 5);
    assert_eq!(
        claims,
        json!({"sub":"_UCloud","role":"SERVICE","principalType":"service","iss":ISS,
               "aud":["all:write"],"iat":iat,"exp":iat + 600})
    );

    let token = keys().signer.provider_token("p1", "issuer.example", 60);
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "#P_p1");
    assert_eq!(claims["role"], "PROVIDER");
    assert_eq!(claims["principalType"], "provider");
    assert_eq!(claims["iss"], "issuer.example");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
    // Issuer is pinned.
    let v = TokenVerifier::for_provider_calls(keys().signer.public_key(), ISS, "p1");
    assert_eq!(v.verify(&token), Err(TokenError::WrongIssuer));
    let v = TokenVerifier::for_provider_calls(keys().signer.public_key(), "issuer.example", "p1");
    assert!(v.verify(&token).is_ok());
}

#[test]
fn unverified_expiry_reads_exp_only() {
    let token = keys().signer.provider_token(PROVIDER, ISS, 600);
    let exp = unverified_expiry(&token).expect("exp");
    assert!((exp - (now() + 600)).abs() <= 5);
    // Unverified on purpose: a token from another key still yields its exp.
    assert!(unverified_expiry(&other_keys().signer.service_token(ISS, 10)).is_some());
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.!!!.c",
        &format!("a.{}.c", b64("[1]")),
    ] {
        assert_eq!(unverified_expiry(junk), None, "{junk}");
    }
    assert_eq!(
        unverified_expiry(&format!("a.{}.c", b64(r#"{"exp":"soon"}"#))),
        None
    );
    assert_eq!(
        unverified_expiry(&format!("a.{}.c", b64(r#"{"exp":42}"#))),
        Some(42)
    );
}

#[cfg(unix)]
#[test]
fn write_keypair_creates_dirs_and_sets_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("auth-test-{}-{}", std::process::id(), now()));
    let private = dir.join("a/b/private.pem");
    let public = dir.join("c/public.pem");
    // A pre-existing, world-readable private key file must be tightened.
    std::fs::create_dir_all(private.parent().unwrap()).unwrap();
    std::fs::write(&private, "old").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o666)).unwrap();

    write_keypair(&keys().pair, &private, &public).expect("write");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o644);
    let private_text = std::fs::read_to_string(&private).unwrap();
    let public_text = std::fs::read_to_string(&public).unwrap();
    assert_eq!(private_text, keys().pair.private_pkcs8_pem);
    assert!(TokenSigner::from_private_pem(&private_text).is_ok());
    assert!(verifies_service_token(
        PublicKey::parse(&public_text).unwrap()
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
