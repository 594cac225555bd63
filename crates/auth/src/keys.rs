//! Key loading (public and private), generation and storage.
//!
//! UCloud hands a provider its public key as bare base64 DER (SubjectPublicKeyInfo without PEM armour),
//! whereas humans and tools tend to produce PEM; all of these are accepted, everything else is refused
//! with a message that says what was found and what was expected.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
    PrivateKeyInfo,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Smallest RSA modulus accepted, in bits. UCloud generates RSA-2048; anything smaller is forgeable
/// in practice and therefore a configuration error.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key text is empty")]
    Empty,
    #[error("malformed PEM armour: {0}")]
    BadPem(String),
    #[error("unsupported PEM block `{found}`; expected {expected}")]
    UnsupportedPem {
        found: String,
        expected: &'static str,
    },
    #[error("the key is neither PEM nor valid base64 DER ({0})")]
    Base64(String),
    #[error("the key is not a valid {what} structure ({detail})")]
    BadDer { what: &'static str, detail: String },
    #[error("the key is a {0} key, but only RSA keys are supported (UCloud signs with RS256)")]
    NotRsa(String),
    #[error("the RSA key has {0} bits; at least {MIN_RSA_BITS} are required")]
    TooSmall(usize),
    #[error("invalid RSA key: {0}")]
    InvalidRsa(String),
}

/// RS256 public key of the Core for this provider (the Core uses one key pair per provider).
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) decoding: DecodingKey,
    bits: usize,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA-{})", self.bits)
    }
}

impl PublicKey {
    /// Accepts PEM SPKI (`BEGIN PUBLIC KEY`), PEM PKCS#1 (`BEGIN RSA PUBLIC KEY`) and the raw base64
    /// DER SubjectPublicKeyInfo that UCloud ships (whitespace inside allowed; raw PKCS#1 DER is also
    /// tolerated). Non-RSA keys and RSA keys under 2048 bits are refused.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let text = clean(text);
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let key = if text.contains("-----BEGIN") {
            let (label, der) = parse_pem(text)?;
            match label.as_str() {
                "PUBLIC KEY" => rsa_from_spki(&der)?,
                "RSA PUBLIC KEY" => rsa_from_pkcs1(&der)?,
                l if l.contains("PRIVATE KEY") => return Err(KeyError::UnsupportedPem {
                    found: label,
                    expected:
                        "a public key (this is a private key; it must not be given to the provider)",
                }),
                "CERTIFICATE" => return Err(KeyError::UnsupportedPem {
                    found: label,
                    expected:
                        "PUBLIC KEY or RSA PUBLIC KEY (extract the public key from the certificate)",
                }),
                _ => {
                    return Err(KeyError::UnsupportedPem {
                        found: label,
                        expected: "PUBLIC KEY or RSA PUBLIC KEY",
                    })
                }
            }
        } else {
            let der = decode_base64(text)?;
            // The UCloud format is SPKI; fall back to PKCS#1 but report the SPKI error if both fail,
            // since that is the format the operator most likely meant to supply.
            match rsa_from_spki(&der) {
                Ok(key) => key,
                Err(spki_err) => rsa_from_pkcs1(&der).map_err(|_| spki_err)?,
            }
        };
        Ok(PublicKey::from_rsa(&key))
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    pub(crate) fn from_rsa(key: &RsaPublicKey) -> PublicKey {
        PublicKey {
            decoding: DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ),
            bits: key.n().bits(),
        }
    }
}

/// Strips a UTF-8 byte-order mark and surrounding whitespace (files edited on other systems).
fn clean(text: &str) -> &str {
    text.trim().trim_start_matches('\u{feff}').trim()
}

/// Splits one PEM block into (label, DER). Explanatory text before the block is ignored (RFC 7468 §5.2),
/// but anything after it is refused so that a chain or a second key is never silently dropped.
fn parse_pem(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::BadPem("no `-----BEGIN ...-----` line".into()))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or_else(|| KeyError::BadPem("unterminated BEGIN line".into()))?;
    if label.is_empty() || label.contains(['\n', '\r']) {
        return Err(KeyError::BadPem("malformed BEGIN line".into()));
    }
    let end = format!("-----END {label}-----");
    let (body, trailer) = rest
        .split_once(end.as_str())
        .ok_or_else(|| KeyError::BadPem(format!("missing `{end}` line")))?;
    if !trailer.trim().is_empty() {
        return Err(KeyError::BadPem(format!(
            "unexpected data after `{end}` (exactly one PEM block is allowed)"
        )));
    }
    if body.contains(':') {
        return Err(KeyError::BadPem(
            "PEM headers (e.g. an encrypted key) are not supported".into(),
        ));
    }
    let der = decode_base64(body)?;
    Ok((label.to_string(), der))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(KeyError::Empty);
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| KeyError::Base64(e.to_string()))
}

fn rsa_from_spki(der: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| KeyError::BadDer {
        what: "SubjectPublicKeyInfo",
        detail: e.to_string(),
    })?;
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(KeyError::NotRsa(describe_oid(
            &spki.algorithm.oid.to_string(),
        )));
    }
    let key =
        RsaPublicKey::from_public_key_der(der).map_err(|e| KeyError::InvalidRsa(e.to_string()))?;
    check_size(key.n().bits())?;
    Ok(key)
}

fn rsa_from_pkcs1(der: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let key = RsaPublicKey::from_pkcs1_der(der).map_err(|e| KeyError::BadDer {
        what: "PKCS#1 RSAPublicKey",
        detail: e.to_string(),
    })?;
    check_size(key.n().bits())?;
    Ok(key)
}

fn check_size(bits: usize) -> Result<(), KeyError> {
    if bits < MIN_RSA_BITS {
        return Err(KeyError::TooSmall(bits));
    }
    Ok(())
}

fn describe_oid(oid: &str) -> String {
    let name = match oid {
        "1.2.840.10045.2.1" => "EC",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS-only",
        _ => return format!("non-RSA (algorithm OID {oid})"),
    };
    name.to_string()
}

/// Parses an RSA private key from PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM.
pub(crate) fn parse_private_pem(pem: &str) -> Result<RsaPrivateKey, KeyError> {
    let text = clean(pem);
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    let (label, der) = parse_pem(text)?;
    let key = match label.as_str() {
        "PRIVATE KEY" => {
            let info = PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| KeyError::BadDer {
                what: "PKCS#8 PrivateKeyInfo",
                detail: e.to_string(),
            })?;
            if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
                return Err(KeyError::NotRsa(describe_oid(
                    &info.algorithm.oid.to_string(),
                )));
            }
            RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| KeyError::InvalidRsa(e.to_string()))?
        }
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| KeyError::BadDer {
            what: "PKCS#1 RSAPrivateKey",
            detail: e.to_string(),
        })?,
        _ => {
            return Err(KeyError::UnsupportedPem {
                found: label,
                expected: "PRIVATE KEY or RSA PRIVATE KEY (unencrypted)",
            })
        }
    };
    key.validate()
        .map_err(|e| KeyError::InvalidRsa(e.to_string()))?;
    check_size(key.n().bits())?;
    Ok(key)
}

/// A freshly generated key pair in the encodings the rest of the system needs.
#[derive(Clone)]
pub struct KeyPair {
    pub private_pkcs8_pem: String,
    pub public_spki_pem: String,
    /// The public key the way UCloud ships it: base64 DER SubjectPublicKeyInfo, no armour, one line.
    pub public_der_base64: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_pkcs8_pem", &"[redacted]")
            .field("public_der_base64", &self.public_der_base64)
            .finish()
    }
}

/// Fresh RSA-2048 key pair, as the Core generates per provider. Slow (tens to hundreds of ms).
pub fn generate_keypair() -> KeyPair {
    // None of these can fail for a 2048-bit key and a working OS RNG; they do not depend on input.
    let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, MIN_RSA_BITS)
        .expect("RSA-2048 key generation failed (OS random number generator unavailable?)");
    let public = private.to_public_key();
    let private_pkcs8_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of a generated RSA key")
        .to_string();
    let public_spki_pem = public
        .to_public_key_pem(LineEnding::LF)
        .expect("SPKI PEM encoding of a generated RSA key");
    let public_der = public
        .to_public_key_der()
        .expect("SPKI DER encoding of a generated RSA key");
    KeyPair {
        private_pkcs8_pem,
        public_spki_pem,
        public_der_base64: STANDARD.encode(public_der.as_bytes()),
    }
}

/// Writes the private key (mode 0600) and public key (mode 0644) as PEM, creating parent directories.
/// Modes are set explicitly, so a pre-existing file with looser permissions is tightened, not reused.
pub fn write_keypair(pair: &KeyPair, private_path: &Path, public_path: &Path) -> io::Result<()> {
    write_with_mode(private_path, pair.private_pkcs8_pem.as_bytes(), 0o600)?;
    write_with_mode(public_path, pair.public_spki_pem.as_bytes(), 0o644)
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path)?;
    // Tighten (or widen, for the public key) before writing: `mode` above only applies to new files
    // and is filtered by the umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(data)?;
    file.sync_all()
}
