//! Hashes as Nix names and prints them: md5, sha1, sha256, sha512 in base16, nixbase32, base64
//! and SRI, with and without the `algo:` prefix, plus a streaming [`Hasher`].

use std::fmt;
use std::io;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::Digest as _;

use crate::nixbase32;

/// A hash algorithm Nix knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 4] = [
        HashAlgo::Md5,
        HashAlgo::Sha1,
        HashAlgo::Sha256,
        HashAlgo::Sha512,
    ];

    /// The digest length in bytes.
    pub const fn size(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    /// The name Nix uses (`sha256`).
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        HashAlgo::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| HashError::UnknownAlgo(s.to_string()))
    }
}

/// How a hash is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base16,
    Nixbase32,
    Base64,
    /// `sha256-<base64>`; always carries the algorithm.
    Sri,
}

/// Why a hash string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("unknown hash algorithm {0:?} (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgo(String),
    #[error("hash {0:?} names no algorithm (expected a prefix like \"sha256:\" or an SRI hash)")]
    MissingAlgo(String),
    #[error("hash {hash:?} has length {found}, which is no encoding of a {algo} hash (expected {base16} hex, {base32} nixbase32 or {base64} base64 characters)")]
    WrongLength {
        hash: String,
        algo: HashAlgo,
        found: usize,
        base16: usize,
        base32: usize,
        base64: usize,
    },
    #[error("hash {hash:?}: {reason}")]
    BadDigits { hash: String, reason: String },
    #[error("hash algorithm mismatch: expected {expected}, found {found}")]
    AlgoMismatch { expected: HashAlgo, found: HashAlgo },
}

/// A digest together with its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algo: HashAlgo,
    bytes: [u8; 64],
}

impl Hash {
    /// Wraps a digest; `digest.len()` must equal `algo.size()`.
    pub fn from_digest(algo: HashAlgo, digest: &[u8]) -> Option<Hash> {
        if digest.len() != algo.size() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Hash { algo, bytes })
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn digest(&self) -> &[u8] {
        &self.bytes[..self.algo.size()]
    }

    /// Hashes a byte string in one go.
    pub fn of(algo: HashAlgo, data: &[u8]) -> Hash {
        let mut h = Hasher::new(algo);
        h.update(data);
        h.finish()
    }

    /// The digits alone, without algorithm.
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Base16 => to_hex(self.digest()),
            Encoding::Nixbase32 => nixbase32::encode(self.digest()),
            Encoding::Base64 => BASE64.encode(self.digest()),
            Encoding::Sri => self.to_sri(),
        }
    }

    /// `algo:digits`, the form of narinfo and store metadata (`sha256:<nixbase32>`).
    pub fn to_prefixed(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Sri => self.to_sri(),
            e => format!("{}:{}", self.algo, self.encode(e)),
        }
    }

    /// `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, BASE64.encode(self.digest()))
    }

    /// `sha256:<nixbase32>`, the form narinfos use.
    pub fn to_nix_string(&self) -> String {
        self.to_prefixed(Encoding::Nixbase32)
    }

    /// Parses any form that names its algorithm: `algo:digits` (base16, nixbase32 or base64,
    /// told apart by length, as Nix does) or SRI `algo-base64`.
    pub fn parse_any(s: &str) -> Result<Hash, HashError> {
        if let Some((algo, digits)) = s.split_once(':') {
            let algo: HashAlgo = algo.parse()?;
            return Hash::parse_digits(algo, digits);
        }
        if let Some((algo, digits)) = s.split_once('-') {
            if let Ok(algo) = algo.parse::<HashAlgo>() {
                return Hash::parse_sri_digits(algo, digits, s);
            }
        }
        Err(HashError::MissingAlgo(s.to_string()))
    }

    /// Parses a hash of a known algorithm: with or without the `algo:` prefix, or SRI.
    pub fn parse_as(algo: HashAlgo, s: &str) -> Result<Hash, HashError> {
        if s.contains(':') || s.starts_with(&format!("{}-", algo.name())) {
            let h = Hash::parse_any(s)?;
            if h.algo != algo {
                return Err(HashError::AlgoMismatch {
                    expected: algo,
                    found: h.algo,
                });
            }
            return Ok(h);
        }
        Hash::parse_digits(algo, s)
    }

    /// Parses bare digits, telling the encoding by length.
    pub fn parse_digits(algo: HashAlgo, digits: &str) -> Result<Hash, HashError> {
        let size = algo.size();
        let bad = |reason: String| HashError::BadDigits {
            hash: digits.to_string(),
            reason,
        };
        let bytes = if digits.len() == size * 2 {
            from_hex(digits).map_err(bad)?
        } else if digits.len() == nixbase32::encoded_len(size) {
            nixbase32::decode(digits).map_err(|e| bad(e.to_string()))?
        } else if digits.len() == base64_len(size) {
            decode_base64(digits).map_err(bad)?
        } else {
            return Err(HashError::WrongLength {
                hash: digits.to_string(),
                algo,
                found: digits.len(),
                base16: size * 2,
                base32: nixbase32::encoded_len(size),
                base64: base64_len(size),
            });
        };
        Hash::from_digest(algo, &bytes).ok_or_else(|| HashError::BadDigits {
            hash: digits.to_string(),
            reason: format!("decodes to {} bytes, expected {size}", bytes.len()),
        })
    }

    fn parse_sri_digits(algo: HashAlgo, digits: &str, whole: &str) -> Result<Hash, HashError> {
        let bytes = decode_base64(digits).map_err(|reason| HashError::BadDigits {
            hash: whole.to_string(),
            reason,
        })?;
        Hash::from_digest(algo, &bytes).ok_or_else(|| HashError::BadDigits {
            hash: whole.to_string(),
            reason: format!(
                "SRI digest is {} bytes, a {algo} digest has {}",
                bytes.len(),
                algo.size()
            ),
        })
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_nix_string())
    }
}

impl fmt::Display for Hash {
    /// Nix's canonical text form: `algo:<nixbase32>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix_string())
    }
}

fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(s).map_err(|e| format!("invalid base64: {e}"))
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses hex of either case.
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    let nibble = |c: u8, pos: usize| -> Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("invalid hex digit {:?} at position {pos}", c as char))
    };
    let b = s.as_bytes();
    (0..b.len() / 2)
        .map(|i| Ok(nibble(b[2 * i], 2 * i)? << 4 | nibble(b[2 * i + 1], 2 * i + 1)?))
        .collect()
}

/// A SHA-256 the host may supply instead of the built-in one (in Node, OpenSSL's runs ~10×
/// faster than SHA-256 compiled to wasm). It must compute SHA-256 exactly; nothing is trusted
/// from it but the digest.
pub trait Sha256Host {
    fn update(&mut self, data: &[u8]);
    fn finish(self: Box<Self>) -> Hash;
}

impl Sha256Host for Hasher {
    fn update(&mut self, data: &[u8]) {
        Hasher::update(self, data)
    }
    fn finish(self: Box<Self>) -> Hash {
        Hasher::finish(*self)
    }
}

/// Makes SHA-256 hashers: the built-in one, or the host's.
pub type Sha256Factory<'a> = &'a dyn Fn() -> Box<dyn Sha256Host>;

/// The built-in SHA-256, boxed.
pub fn builtin_sha256() -> Box<dyn Sha256Host> {
    Box::new(Hasher::new(HashAlgo::Sha256))
}

/// A streaming hasher for any [`HashAlgo`]; also an [`io::Write`] sink.
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Hasher {
        match algo {
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Hash {
        let (algo, digest): (HashAlgo, Vec<u8>) = match self {
            Hasher::Md5(h) => (HashAlgo::Md5, h.finalize().to_vec()),
            Hasher::Sha1(h) => (HashAlgo::Sha1, h.finalize().to_vec()),
            Hasher::Sha256(h) => (HashAlgo::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (HashAlgo::Sha512, h.finalize().to_vec()),
        };
        Hash::from_digest(algo, &digest).expect("digest length matches its algorithm")
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts what passes through it on its way to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: io::Write> HashingWriter<W> {
    pub fn new(algo: HashAlgo, inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algo),
            count: 0,
        }
    }
    /// The hash and byte count so far, and the inner writer.
    pub fn finish(self) -> (Hash, u64, W) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(algo: HashAlgo, inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algo),
            count: 0,
        }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn finish(self) -> (Hash, u64, R) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        let h = Hash::of(HashAlgo::Sha256, b"");
        assert_eq!(
            h.encode(Encoding::Base16),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            h.to_sri(),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        for e in [Encoding::Base16, Encoding::Nixbase32, Encoding::Base64] {
            assert_eq!(Hash::parse_as(HashAlgo::Sha256, &h.encode(e)).unwrap(), h);
            assert_eq!(Hash::parse_any(&h.to_prefixed(e)).unwrap(), h);
        }
        assert_eq!(Hash::parse_any(&h.to_sri()).unwrap(), h);
    }

    #[test]
    fn every_algo() {
        for algo in HashAlgo::ALL {
            let h = Hash::of(algo, b"abc");
            assert_eq!(h.digest().len(), algo.size());
            assert_eq!(Hash::parse_any(&h.to_nix_string()).unwrap(), h);
            assert_eq!(Hash::parse_any(&h.to_sri()).unwrap(), h);
        }
        assert_eq!(
            Hash::of(HashAlgo::Md5, b"abc").encode(Encoding::Base16),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            Hash::of(HashAlgo::Sha1, b"abc").encode(Encoding::Base16),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            Hash::parse_any("sha257:00"),
            Err(HashError::UnknownAlgo(_))
        ));
        assert!(matches!(
            Hash::parse_any("abcd"),
            Err(HashError::MissingAlgo(_))
        ));
        assert!(matches!(
            Hash::parse_any("sha256:abcd"),
            Err(HashError::WrongLength { .. })
        ));
        assert!(matches!(
            Hash::parse_as(
                HashAlgo::Sha1,
                &Hash::of(HashAlgo::Sha256, b"").to_nix_string()
            ),
            Err(HashError::AlgoMismatch { .. })
        ));
        let bad_hex = format!("sha256:{}", "g".repeat(64));
        assert!(matches!(
            Hash::parse_any(&bad_hex),
            Err(HashError::BadDigits { .. })
        ));
    }
}
