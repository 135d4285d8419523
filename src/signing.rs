//! Ed25519 signing keys and signatures in Nix's text formats: secret `name:base64(seed ‖ public)`,
//! public `name:base64(public)`, signature `name:base64(signature)`.

mod table;

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} {text:?} is not of the form NAME:BASE64")]
    NoName { what: &'static str, text: String },
    #[error("{what} named {name:?}: invalid base64: {reason}")]
    BadBase64 {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error("{what} named {name:?} has {found} bytes, expected {expected}")]
    WrongLength {
        what: &'static str,
        name: String,
        found: usize,
        expected: usize,
    },
    #[error("{what} named {name:?} is not a valid ed25519 key")]
    InvalidKey { what: &'static str, name: String },
    #[error("secret key named {name:?}: its public half does not belong to its seed")]
    Mismatch { name: String },
    #[error("{name:?} is a public key (32 bytes), not a secret key (64): give the secret key file (`nar-tool key generate --secret` or `nix-store --generate-binary-cache-key` writes one)")]
    PublicNotSecret { name: String },
    #[error("{name:?} is a secret key (64 bytes), not a public key (32): give its public key (`nar-tool key public FILE` prints it), and keep the secret one secret")]
    SecretNotPublic { name: String },
}

fn split_named<'a>(what: &'static str, text: &'a str) -> Result<(&'a str, &'a str), KeyError> {
    let text_trimmed = text.trim();
    match text_trimmed.split_once(':') {
        Some((name, rest)) if !name.is_empty() => Ok((name, rest)),
        _ => Err(KeyError::NoName {
            what,
            text: text_trimmed.chars().take(80).collect(),
        }),
    }
}

fn decode_fixed<const N: usize>(
    what: &'static str,
    name: &str,
    b64: &str,
) -> Result<[u8; N], KeyError> {
    let bytes = BASE64.decode(b64).map_err(|e| KeyError::BadBase64 {
        what,
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::WrongLength {
            what,
            name: name.to_string(),
            found: bytes.len(),
            expected: N,
        })
}

/// A secret signing key.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Makes a key from 32 random bytes (the caller provides the randomness).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses `name:base64(64 bytes)` as `nix-store --generate-binary-cache-key` writes it.
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        const WHAT: &str = "secret key";
        let (name, b64) = split_named(WHAT, text)?;
        let bytes: [u8; 64] = decode_fixed(WHAT, name, b64).map_err(|e| match e {
            KeyError::WrongLength { found: 32, .. } => KeyError::PublicNotSecret {
                name: name.to_string(),
            },
            e => e,
        })?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| KeyError::Mismatch {
            name: name.to_string(),
        })?;
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.name.clone(), self.key.verifying_key())
    }

    /// Signs `message` (for a narinfo, its fingerprint).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            key_name: self.name.clone(),
            bytes: self.key.sign(message).to_bytes(),
        }
    }

    /// The text form, as a secret key file holds it.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}",
            self.name,
            BASE64.encode(self.key.to_keypair_bytes())
        )
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:…)", self.name)
    }
}

/// A public key, as `trusted-public-keys` lists them.
#[derive(Clone)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
    /// Its multiples, made when it first checks a signature (shared by its clones).
    table: Arc<OnceLock<table::KeyTable>>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.name == other.name && self.key == other.key
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        const WHAT: &str = "public key";
        let (name, b64) = split_named(WHAT, text)?;
        let bytes: [u8; 32] = decode_fixed(WHAT, name, b64).map_err(|e| match e {
            KeyError::WrongLength { found: 64, .. } => KeyError::SecretNotPublic {
                name: name.to_string(),
            },
            e => e,
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidKey {
            what: WHAT,
            name: name.to_string(),
        })?;
        Ok(PublicKey::new(name.to_string(), key))
    }

    fn new(name: String, key: VerifyingKey) -> PublicKey {
        PublicKey {
            name,
            key,
            table: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` is this key's signature of `message` (the names must match too), as
    /// ed25519-dalek's `verify` decides, with the key's multiples computed once.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> bool {
        sig.key_name == self.name
            && self
                .table
                .get_or_init(|| table::KeyTable::new(&self.key))
                .verify(&self.key, message, &sig.bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A signature with the name of the key that made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    key_name: String,
    bytes: [u8; 64],
}

impl Signature {
    pub fn parse(text: &str) -> Result<Signature, KeyError> {
        const WHAT: &str = "signature";
        let (name, b64) = split_named(WHAT, text)?;
        Ok(Signature {
            key_name: name.to_string(),
            bytes: decode_fixed(WHAT, name, b64)?,
        })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_name, BASE64.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

/// What checking a set of signatures against trusted keys found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Names of trusted keys with a valid signature.
    pub valid: Vec<String>,
    /// Signatures by a trusted key's name that do not verify.
    pub invalid: Vec<String>,
    /// Signatures by keys not in the trusted set (not checked).
    pub unknown: Vec<String>,
    /// Signature lines that do not parse.
    pub malformed: Vec<String>,
}

/// Checks every signature in `sigs` against `trusted`.
pub fn check_signatures<'a>(
    message: &[u8],
    sigs: impl IntoIterator<Item = &'a str>,
    trusted: &[PublicKey],
) -> SignatureCheck {
    let mut out = SignatureCheck::default();
    for text in sigs {
        match Signature::parse(text) {
            Err(_) => out.malformed.push(text.to_string()),
            Ok(sig) => judge_one(message, &sig, trusted, &mut out),
        }
    }
    out
}

/// [`check_signatures`] of signatures already parsed.
pub fn check_parsed_signatures(
    message: &[u8],
    sigs: &[Signature],
    trusted: &[PublicKey],
) -> SignatureCheck {
    let mut out = SignatureCheck::default();
    for sig in sigs {
        judge_one(message, sig, trusted, &mut out);
    }
    out
}

fn judge_one(message: &[u8], sig: &Signature, trusted: &[PublicKey], out: &mut SignatureCheck) {
    let mut keys = trusted.iter().filter(|k| k.name == sig.key_name).peekable();
    if keys.peek().is_none() {
        out.unknown.push(sig.key_name.clone());
    } else if keys.any(|k| k.verify(message, sig)) {
        out.valid.push(sig.key_name.clone());
    } else {
        out.invalid.push(sig.key_name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let sk = SecretKey::from_seed("test-1", &[7u8; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert!(pk.verify(b"hello", &sig));
        assert!(!pk.verify(b"hellO", &sig));
        let sk2 = SecretKey::parse(&sk.to_text()).unwrap();
        assert_eq!(sk2.public_key(), pk);
        assert_eq!(PublicKey::parse(&pk.to_string()).unwrap(), pk);
        assert_eq!(Signature::parse(&sig.to_string()).unwrap(), sig);
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            PublicKey::parse("nocolon"),
            Err(KeyError::NoName { .. })
        ));
        assert!(matches!(
            PublicKey::parse(":AAAA"),
            Err(KeyError::NoName { .. })
        ));
        assert!(matches!(
            PublicKey::parse("k:!!"),
            Err(KeyError::BadBase64 { .. })
        ));
        assert!(matches!(
            PublicKey::parse("k:AAAA"),
            Err(KeyError::WrongLength { found: 3, .. })
        ));
        let mut bad = SecretKey::from_seed("k", &[1; 32]).key.to_keypair_bytes();
        bad[40] ^= 1;
        assert!(matches!(
            SecretKey::parse(&format!("k:{}", BASE64.encode(bad))),
            Err(KeyError::Mismatch { .. })
        ));
        // One half of a pair given for the other: said so.
        let sk = SecretKey::from_seed("k", &[1; 32]);
        let e = SecretKey::parse(&sk.public_key().to_string()).unwrap_err();
        assert!(matches!(e, KeyError::PublicNotSecret { .. }), "{e}");
        assert!(e.to_string().contains("is a public key"), "{e}");
        let e = PublicKey::parse(&sk.to_text()).unwrap_err();
        assert!(matches!(e, KeyError::SecretNotPublic { .. }), "{e}");
        assert!(e.to_string().contains("is a secret key"), "{e}");
    }
}
