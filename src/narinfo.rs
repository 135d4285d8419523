//! `<hashpart>.narinfo`: parsing (strict, with line numbers; unknown keys kept), writing in Nix's
//! exact line order, the signing fingerprint and signatures.

use std::fmt::{self, Write as _};

use crate::compression::{Compression, UnsupportedCompression};
use crate::hash::{Hash, HashAlgo};
use crate::signing::{check_parsed_signatures, PublicKey, SecretKey, Signature, SignatureCheck};
use crate::store_path::{ContentAddress, StoreDir, StorePath};

/// Narinfos larger than this are refused before parsing (real ones are well under 100 KiB).
pub const MAX_NARINFO_SIZE: usize = 1 << 20;

/// A narinfo Nix or a human could not use, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct NarInfoError {
    pub line: Option<usize>,
    pub message: String,
}

fn err<T>(line: Option<usize>, message: impl Into<String>) -> Result<T, NarInfoError> {
    Err(NarInfoError {
        line,
        message: message.into(),
    })
}

/// A narinfo's `Compression:`: a method this crate decodes, or another one Nix names (`br`,
/// `lz4`, `lzip`, `gzip`, …), kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarCompression {
    Known(Compression),
    Other(String),
}

/// Methods Nix can write besides the ones this crate decodes (`br`, and libarchive's filters).
pub const OTHER_NIX_COMPRESSIONS: [&str; 9] = [
    "br", "lz4", "lzip", "gzip", "grzip", "compress", "lrzip", "lzma", "lzop",
];

impl NarCompression {
    /// Any name, kept as written (see [`NarCompression::parse_known`] for a narinfo's).
    pub fn parse(name: &str) -> NarCompression {
        match name.parse() {
            Ok(c) => NarCompression::Known(c),
            Err(_) => NarCompression::Other(name.to_string()),
        }
    }

    /// A method Nix knows (`xz`, `zstd`, `bzip2`, `none` or one of [`OTHER_NIX_COMPRESSIONS`]);
    /// another name is refused, with the method meant when it is a file extension (`zst`).
    pub fn parse_known(name: &str) -> Result<NarCompression, String> {
        let c = NarCompression::parse(name);
        if matches!(&c, NarCompression::Other(n) if !OTHER_NIX_COMPRESSIONS.contains(&n.as_str())) {
            let meant = Compression::ALL
                .iter()
                .find(|m| !m.extension().is_empty() && m.extension()[1..] == *name)
                .map(|m| format!("; did you mean {:?}?", m.name()))
                .unwrap_or_default();
            let known: Vec<&str> = Compression::ALL.iter().map(|m| m.name()).collect();
            return Err(format!(
                "{:?} is not a compression method Nix knows ({}, {}){meant}",
                truncate(name),
                known.join(", "),
                OTHER_NIX_COMPRESSIONS.join(", ")
            ));
        }
        Ok(c)
    }

    /// The name, as a narinfo writes it.
    pub fn as_str(&self) -> &str {
        match self {
            NarCompression::Known(c) => c.name(),
            NarCompression::Other(name) => name,
        }
    }

    /// The method, if this crate decodes it.
    pub fn method(&self) -> Result<Compression, UnsupportedCompression> {
        match self {
            NarCompression::Known(c) => Ok(*c),
            NarCompression::Other(name) => Err(UnsupportedCompression(name.clone())),
        }
    }

    /// The file extension Nix gives a NAR compressed so (`.xz`), if it knows the method.
    pub fn extension(&self) -> Option<&'static str> {
        Some(match self {
            NarCompression::Known(c) => c.extension(),
            NarCompression::Other(name) => match name.as_str() {
                "br" => ".br",
                "lz4" => ".lz4",
                "lzip" => ".lzip",
                "gzip" => ".gz",
                _ => return None,
            },
        })
    }
}

impl fmt::Display for NarCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for NarCompression {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The keys Nix reads in a narinfo; any other is kept but means nothing to Nix.
pub const KNOWN_KEYS: [&str; 12] = [
    "StorePath",
    "URL",
    "Compression",
    "FileHash",
    "FileSize",
    "NarHash",
    "NarSize",
    "References",
    "Deriver",
    "System",
    "Sig",
    "CA",
];

/// The known key an unknown one is likely a misspelling of (`Referenes` → `References`): one
/// within two edits (and fewer than its length), ignoring case.
pub fn similar_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    KNOWN_KEYS
        .iter()
        .map(|k| (edit_distance(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 2 && *d < key.chars().count())
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A narinfo's `CA:`: a content address in Nix's form (`fixed:r:sha256:<nixbase32>`,
/// `fixed:<algo>:…`, `text:sha256:…`), or any other value, kept as written (a form a later Nix
/// writes, or one spelled otherwise: another hash encoding), so that every narinfo is written
/// back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarContentAddress {
    Known(ContentAddress),
    Other(String),
}

impl NarContentAddress {
    /// Never fails: a value that is not exactly the form Nix writes is kept as [`Self::Other`].
    pub fn parse(value: &str) -> NarContentAddress {
        match ContentAddress::parse(value) {
            Ok(ca) if ca.to_string() == value => NarContentAddress::Known(ca),
            _ => NarContentAddress::Other(value.to_string()),
        }
    }

    /// The content address, if it is in a form Nix writes.
    pub fn known(&self) -> Option<&ContentAddress> {
        match self {
            NarContentAddress::Known(ca) => Some(ca),
            NarContentAddress::Other(_) => None,
        }
    }
}

impl From<ContentAddress> for NarContentAddress {
    fn from(ca: ContentAddress) -> NarContentAddress {
        NarContentAddress::Known(ca)
    }
}

impl fmt::Display for NarContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NarContentAddress::Known(ca) => ca.fmt(f),
            NarContentAddress::Other(value) => f.write_str(value),
        }
    }
}

/// A parsed narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_dir: StoreDir,
    pub store_path: StorePath,
    /// Relative to the cache root: `nar/<filehash>.nar.xz`.
    pub url: String,
    /// `xz`, `zstd`, `bzip2`, `none`, …; `bzip2` when the file has no `Compression:`.
    pub compression: NarCompression,
    pub file_hash: Option<Hash>,
    pub file_size: Option<u64>,
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// Sorted, as Nix keeps them.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub system: Option<String>,
    /// Signatures (`Sig: name:base64`), each checked to be one when parsed.
    pub sigs: Vec<Signature>,
    /// Content address (`fixed:r:sha256:…`, `text:sha256:…`).
    pub ca: Option<NarContentAddress>,
    /// Keys this parser does not know, kept in order and written back after the known ones.
    pub extra: Vec<(String, String)>,
}

impl NarInfo {
    /// Parses narinfo text.
    pub fn parse(text: &str) -> Result<NarInfo, NarInfoError> {
        if text.len() > MAX_NARINFO_SIZE {
            return err(
                None,
                format!(
                    "narinfo of {} bytes exceeds the limit of {MAX_NARINFO_SIZE} bytes",
                    text.len()
                ),
            );
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return err(
                Some(text.lines().count()),
                "the last line does not end with a newline (the file may be truncated)",
            );
        }
        let mut store: Option<(StoreDir, StorePath)> = None;
        let (mut url, mut compression, mut file_hash, mut file_size) = (None, None, None, None);
        let (mut nar_hash, mut nar_size, mut references, mut deriver) = (None, None, None, None);
        let (mut system, mut ca) = (None, None);
        let mut sigs = Vec::new();
        let mut extra = Vec::new();
        let mut seen: Vec<&str> = Vec::new();

        // Lines end at '\n' only, as in Nix: a '\r' stays part of the value (and is refused
        // where the value must be a path or hash), so every value written back reads back the same.
        for (i, line) in text.split_terminator('\n').enumerate() {
            let n = Some(i + 1);
            let Some((key, value)) = line
                .split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            else {
                return err(
                    n,
                    format!("expected \"Key: value\", found {:?}", truncate(line)),
                );
            };
            if key != "Sig" && !key.is_empty() {
                if seen.contains(&key) {
                    return err(n, format!("duplicate key {key:?}"));
                }
                seen.push(key);
            }
            let parse_hash = |what: &str| {
                Hash::parse_any(value).map_err(|e| NarInfoError {
                    line: n,
                    message: format!("{what}: {e}"),
                })
            };
            let parse_u64 = |what: &str| {
                value.parse::<u64>().map_err(|_| NarInfoError {
                    line: n,
                    message: format!(
                        "{what}: expected a whole number, found {:?}",
                        truncate(value)
                    ),
                })
            };
            match key {
                "StorePath" => {
                    let (dir, base) = value.rsplit_once('/').unwrap_or(("", value));
                    let dir = StoreDir::new(dir).map_err(|e| NarInfoError {
                        line: n,
                        message: format!("StorePath: {e}"),
                    })?;
                    let path = StorePath::from_base_name(base).map_err(|e| NarInfoError {
                        line: n,
                        message: format!("StorePath: {e}"),
                    })?;
                    store = Some((dir, path));
                }
                "URL" => url = Some(value.to_string()),
                "Compression" => {
                    // Empty means the default, as in Nix.
                    if !value.is_empty() {
                        compression =
                            Some(
                                NarCompression::parse_known(value).map_err(|e| NarInfoError {
                                    line: n,
                                    message: format!("Compression: {e}"),
                                })?,
                            );
                    }
                }
                "FileHash" => file_hash = Some(parse_hash("FileHash")?),
                "FileSize" => file_size = Some(parse_u64("FileSize")?),
                "NarHash" => nar_hash = Some(parse_hash("NarHash")?),
                "NarSize" => {
                    let size = parse_u64("NarSize")?;
                    if size == 0 {
                        return err(n, "NarSize is 0 (no NAR is empty)");
                    }
                    nar_size = Some(size)
                }
                "References" => {
                    let mut refs = Vec::new();
                    for r in value.split(' ').filter(|r| !r.is_empty()) {
                        refs.push(StorePath::from_base_name(r).map_err(|e| NarInfoError {
                            line: n,
                            message: format!("References: {e}"),
                        })?);
                    }
                    refs.sort();
                    refs.dedup();
                    references = Some(refs);
                }
                "Deriver" => {
                    if value != "unknown-deriver" {
                        deriver =
                            Some(StorePath::from_base_name(value).map_err(|e| NarInfoError {
                                line: n,
                                message: format!("Deriver: {e}"),
                            })?);
                    }
                }
                "System" => system = Some(value.to_string()),
                "Sig" => sigs.push(Signature::parse(value).map_err(|e| NarInfoError {
                    line: n,
                    message: format!("Sig: {e}"),
                })?),
                "CA" => ca = Some(NarContentAddress::parse(value)),
                "" => return err(n, "empty key"),
                _ => extra.push((key.to_string(), value.to_string())),
            }
        }
        let Some((store_dir, store_path)) = store else {
            return err(None, "missing required field StorePath");
        };
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return err(None, "missing required field URL");
        };
        let Some(nar_hash) = nar_hash else {
            return err(None, "missing required field NarHash");
        };
        let Some(nar_size) = nar_size else {
            return err(None, "missing required field NarSize");
        };
        // Nix keeps signatures as a set: sorted, without duplicates (and writes them so).
        sigs.sort_by_key(|s: &Signature| s.to_string());
        sigs.dedup();
        Ok(NarInfo {
            store_dir,
            store_path,
            url,
            compression: compression.unwrap_or(NarCompression::Known(Compression::Bzip2)),
            file_hash,
            file_size,
            nar_hash,
            nar_size,
            references: references.unwrap_or_default(),
            deriver,
            system,
            sigs,
            ca,
            extra,
        })
    }

    /// The absolute store path.
    pub fn path(&self) -> String {
        self.store_dir.display(&self.store_path)
    }

    /// The text Nix writes for this narinfo, in its order (signatures sorted, as Nix keeps them).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "StorePath: {}", self.path());
        let _ = writeln!(s, "URL: {}", self.url);
        let _ = writeln!(s, "Compression: {}", self.compression);
        if let Some(h) = &self.file_hash {
            let _ = writeln!(s, "FileHash: {h}");
        }
        if let Some(size) = self.file_size {
            let _ = writeln!(s, "FileSize: {size}");
        }
        let _ = writeln!(s, "NarHash: {}", self.nar_hash);
        let _ = writeln!(s, "NarSize: {}", self.nar_size);
        let refs: Vec<&str> = self.references.iter().map(|r| r.base_name()).collect();
        let _ = writeln!(s, "References: {}", refs.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(s, "Deriver: {d}");
        }
        if let Some(sys) = &self.system {
            let _ = writeln!(s, "System: {sys}");
        }
        let mut sigs: Vec<String> = self.sigs.iter().map(Signature::to_string).collect();
        sigs.sort();
        sigs.dedup();
        for sig in sigs {
            let _ = writeln!(s, "Sig: {sig}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(s, "CA: {ca}");
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k}: {v}");
        }
        s
    }

    /// The message a signature signs: `1;<path>;<sha256 NAR hash>;<NAR size>;<refs,…>`.
    pub fn fingerprint(&self) -> Result<String, NarInfoError> {
        fingerprint(
            &self.store_dir,
            &self.store_path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    /// Adds this key's signature (once).
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), NarInfoError> {
        let sig = key.sign(self.fingerprint()?.as_bytes());
        if !self.sigs.contains(&sig) {
            self.sigs.push(sig);
        }
        Ok(())
    }

    /// Checks the signatures against trusted keys.
    pub fn check_signatures(&self, trusted: &[PublicKey]) -> Result<SignatureCheck, NarInfoError> {
        let fp = self.fingerprint()?;
        Ok(check_parsed_signatures(fp.as_bytes(), &self.sigs, trusted))
    }
}

/// The signing fingerprint of a path's metadata.
pub fn fingerprint(
    store_dir: &StoreDir,
    path: &StorePath,
    nar_hash: &Hash,
    nar_size: u64,
    references: &[StorePath],
) -> Result<String, NarInfoError> {
    if nar_hash.algo() != HashAlgo::Sha256 {
        return err(
            None,
            format!(
                "cannot sign or verify: NarHash is {}, signatures cover SHA-256 NAR hashes only",
                nar_hash.algo()
            ),
        );
    }
    let mut refs: Vec<String> = references.iter().map(|r| store_dir.display(r)).collect();
    refs.sort();
    Ok(format!(
        "1;{};{};{};{}",
        store_dir.display(path),
        nar_hash,
        nar_size,
        refs.join(",")
    ))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_path::FileIngestion;

    const GOOD: &str = "StorePath: /nix/store/3cpw9v40wr678399d4nz2bv4rzvl3r2d-added-public\n\
URL: nar/x.nar.xz\nCompression: xz\nNarHash: sha256:03w5br129k9v835xmdmsf3rf0dqijcqar6g07s6sfqkrh19fbv8b\n\
NarSize: 488\nReferences: \n";

    /// Each value: typed when it is the form Nix writes, else kept; written back byte for byte.
    #[test]
    fn content_addresses_typed_or_kept_as_written() {
        let h = |algo| Hash::of(algo, b"x");
        let sha256 = h(HashAlgo::Sha256);
        let base16 = sha256.to_prefixed(crate::hash::Encoding::Base16);
        let mut high_bits = sha256.to_string();
        high_bits.replace_range(7..8, "z");
        let known: Vec<(String, ContentAddress)> = vec![
            (
                format!("fixed:r:{sha256}"),
                ContentAddress::Fixed(FileIngestion::Recursive, sha256.clone()),
            ),
            (
                format!("fixed:{sha256}"),
                ContentAddress::Fixed(FileIngestion::Flat, sha256.clone()),
            ),
            (
                format!("text:{sha256}"),
                ContentAddress::Text(sha256.clone()),
            ),
            (
                format!("fixed:r:{}", h(HashAlgo::Sha1)),
                ContentAddress::Fixed(FileIngestion::Recursive, h(HashAlgo::Sha1)),
            ),
            (
                format!("fixed:{}", h(HashAlgo::Md5)),
                ContentAddress::Fixed(FileIngestion::Flat, h(HashAlgo::Md5)),
            ),
            (
                format!("fixed:r:{}", h(HashAlgo::Sha512)),
                ContentAddress::Fixed(FileIngestion::Recursive, h(HashAlgo::Sha512)),
            ),
        ];
        let other = [
            String::new(),
            "nonsense".to_string(),
            format!("text:{}", h(HashAlgo::Sha1)),
            format!("fixed:r:{base16}"),
            format!("fixed:r:{}", sha256.to_sri()),
            format!("fixed:git:{}", h(HashAlgo::Sha1)),
            format!("fixed:r:{sha256} "),
            format!("FIXED:r:{sha256}"),
            format!("fixed:r:{high_bits}"),
            "fixed:r:sha256:".to_string(),
            "fixed:r:sha256:ä".to_string(),
            format!("fixed:r:r:{sha256}"),
            "text:".to_string(),
            "x".repeat(4096),
        ];
        let cases = known
            .iter()
            .map(|(v, ca)| (v.clone(), Some(ca.clone())))
            .chain(other.iter().map(|v| (v.clone(), None)));
        for (value, expected) in cases {
            let ca = NarContentAddress::parse(&value);
            assert_eq!(ca.known(), expected.as_ref(), "{value:?}");
            assert_eq!(ca.to_string(), value);
            let text = format!("{GOOD}CA: {value}\n");
            let info = NarInfo::parse(&text).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(info.ca.as_ref(), Some(&ca));
            assert_eq!(info.to_text(), text, "{value:?}");
        }
    }

    #[test]
    fn misspelt_keys_are_recognised() {
        assert_eq!(similar_key("Referenes"), Some("References"));
        assert_eq!(similar_key("references"), Some("References"));
        assert_eq!(similar_key("NarHsh"), Some("NarHash"));
        assert_eq!(similar_key("Sigs"), Some("Sig"));
        assert_eq!(similar_key("X-Whatever"), None);
        assert_eq!(similar_key(""), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn compressions_nix_does_not_know_are_refused() {
        for name in ["xz", "zstd", "bzip2", "none", "br", "lz4", "lzip", "gzip"] {
            let info =
                NarInfo::parse(&GOOD.replace("Compression: xz", &format!("Compression: {name}")))
                    .unwrap();
            assert_eq!(info.compression, name);
        }
        for (name, hint) in [
            ("zst", "did you mean \"zstd\""),
            ("bz2", "did you mean \"bzip2\""),
            ("XZ", "not a compression method Nix knows"),
            ("xz ", "not a compression method Nix knows"),
            ("brotli", "not a compression method Nix knows"),
        ] {
            let e =
                NarInfo::parse(&GOOD.replace("Compression: xz", &format!("Compression: {name}")))
                    .unwrap_err();
            assert_eq!(e.line, Some(3), "{name}: {e}");
            assert!(e.message.starts_with("Compression: "), "{name}: {e}");
            assert!(e.message.contains(hint), "{name}: {e}");
        }
        // Empty is the default, as in Nix.
        let info = NarInfo::parse(&GOOD.replace("Compression: xz", "Compression:")).unwrap();
        assert_eq!(info.compression, "bzip2");
    }
}
