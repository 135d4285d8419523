//! What a binary cache may hold, as keys: the one place that decides whether a name is part of a
//! cache, what its content type is, and where a narinfo's `URL` leads.
//!
//! A flat-file binary cache, as Nix writes it, holds `nix-cache-info`, `<hashpart>.narinfo`,
//! `<hashpart>.ls` (listings), `nar/<filehash>.nar[.<ext>]`, `log/<drv>` and
//! `realisations/<drvhash>!<output>.doi`. Every backend lists, reads and writes by [`CacheKey`];
//! a name that is not one (a temporary file, `bogus.narinfo`, `../x`) is never read or served as
//! part of the cache. Listings are classified by [`classify`], everywhere by the same rule.

use std::fmt;

use crate::nixbase32;

/// The longest key accepted (a NAR file name of Nix's is 4 + 52 + 8 bytes).
pub const MAX_KEY_LEN: usize = 256;

/// A validated name of an object in a binary cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CacheKey {
    /// `nix-cache-info`.
    CacheInfo,
    /// `<hashpart>.narinfo`: the 32 nixbase32 characters of a store path's hash part.
    NarInfo(String),
    /// `<hashpart>.ls`: the NAR listing of a store path.
    Listing(String),
    /// `nar/<file>`: a (compressed) NAR; the file name, without `nar/`.
    Nar(String),
    /// `log/<name>`: a build log, by the derivation's base name.
    Log(String),
    /// `realisations/<name>`: a content-addressed derivation output's realisation.
    Realisation(String),
    /// `nar-tool-index/<name>`: the lookup index's manifest (`index.json`) or one of its shards
    /// (`<52 nixbase32 characters>.zst`); see [`crate::cache::index`].
    Index(String),
}

/// The folder a key lives in: listings and staging are per folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyDir {
    /// The cache's root: `nix-cache-info`, narinfos, listings.
    Root,
    /// `nar/`.
    Nar,
    /// `log/`.
    Log,
    /// `realisations/`.
    Realisations,
    /// `nar-tool-index/`.
    Index,
}

impl KeyDir {
    pub const ALL: [KeyDir; 5] = [
        KeyDir::Root,
        KeyDir::Nar,
        KeyDir::Log,
        KeyDir::Realisations,
        KeyDir::Index,
    ];

    /// The folder's relative path (empty for the root).
    pub const fn path(self) -> &'static str {
        match self {
            KeyDir::Root => "",
            KeyDir::Nar => "nar",
            KeyDir::Log => "log",
            KeyDir::Realisations => "realisations",
            KeyDir::Index => "nar-tool-index",
        }
    }

    /// The prefix of the keys in the folder (`nar/`; empty for the root).
    pub const fn prefix(self) -> &'static str {
        match self {
            KeyDir::Root => "",
            KeyDir::Nar => "nar/",
            KeyDir::Log => "log/",
            KeyDir::Realisations => "realisations/",
            KeyDir::Index => "nar-tool-index/",
        }
    }
}

/// Why a name is not a cache key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a binary cache key: {why}")]
pub struct KeyError {
    pub name: String,
    pub why: &'static str,
}

impl CacheKey {
    /// Parses a relative name (`nar/…`, `<hashpart>.narinfo`, …).
    pub fn parse(name: &str) -> Result<CacheKey, KeyError> {
        let err = |why| KeyError {
            name: name.chars().take(MAX_KEY_LEN).collect(),
            why,
        };
        if name.len() > MAX_KEY_LEN {
            return Err(err("it is too long"));
        }
        if name == "nix-cache-info" {
            return Ok(CacheKey::CacheInfo);
        }
        let (dir, file) = match name.split_once('/') {
            Some((dir, file)) => (dir, file),
            None => ("", name),
        };
        if file.contains('/') {
            return Err(err("it has more than one folder"));
        }
        match dir {
            "" => {
                if let Some(hash) = file.strip_suffix(".narinfo") {
                    check_hash_part(hash).map_err(err)?;
                    Ok(CacheKey::NarInfo(hash.to_string()))
                } else if let Some(hash) = file.strip_suffix(".ls") {
                    check_hash_part(hash).map_err(err)?;
                    Ok(CacheKey::Listing(hash.to_string()))
                } else {
                    Err(err(
                        "not nix-cache-info, <hashpart>.narinfo or <hashpart>.ls",
                    ))
                }
            }
            "nar" => {
                check_nar_file(file).map_err(err)?;
                Ok(CacheKey::Nar(file.to_string()))
            }
            "log" => {
                check_plain_name(file).map_err(err)?;
                Ok(CacheKey::Log(file.to_string()))
            }
            "realisations" => {
                check_plain_name(file).map_err(err)?;
                if !file.ends_with(".doi") {
                    return Err(err("a realisation is named <hash>!<output>.doi"));
                }
                Ok(CacheKey::Realisation(file.to_string()))
            }
            "nar-tool-index" => {
                if file == crate::cache::index::publish::MANIFEST
                    || crate::cache::index::format::is_shard_name(file)
                {
                    Ok(CacheKey::Index(file.to_string()))
                } else {
                    Err(err(
                        "the index holds index.json and <52 nixbase32 characters>.zst",
                    ))
                }
            }
            _ => Err(err("not in nar/, log/, realisations/ or nar-tool-index/")),
        }
    }

    /// The narinfo of a store path's hash part.
    pub fn narinfo(hash_part: &str) -> Result<CacheKey, KeyError> {
        CacheKey::parse(&format!("{hash_part}.narinfo"))
    }

    /// The NAR file `nar/<file_hash>.nar<extension>` (extension as
    /// [`crate::compression::Compression::extension`] gives it).
    pub fn nar_file(file_hash: &str, extension: &str) -> Result<CacheKey, KeyError> {
        CacheKey::parse(&format!("nar/{file_hash}.nar{extension}"))
    }

    /// The folder the key is in.
    pub fn dir(&self) -> KeyDir {
        match self {
            CacheKey::CacheInfo | CacheKey::NarInfo(_) | CacheKey::Listing(_) => KeyDir::Root,
            CacheKey::Nar(_) => KeyDir::Nar,
            CacheKey::Log(_) => KeyDir::Log,
            CacheKey::Realisation(_) => KeyDir::Realisations,
            CacheKey::Index(_) => KeyDir::Index,
        }
    }

    /// The name inside [`CacheKey::dir`].
    pub fn file_name(&self) -> String {
        match self {
            CacheKey::CacheInfo => "nix-cache-info".into(),
            CacheKey::NarInfo(h) => format!("{h}.narinfo"),
            CacheKey::Listing(h) => format!("{h}.ls"),
            CacheKey::Nar(f) | CacheKey::Log(f) | CacheKey::Realisation(f) | CacheKey::Index(f) => {
                f.clone()
            }
        }
    }

    /// The content type served for the key (what Nix's HTTP binary cache store sends).
    pub fn content_type(&self) -> &'static str {
        match self {
            CacheKey::CacheInfo => "text/x-nix-cache-info",
            CacheKey::NarInfo(_) => "text/x-nix-narinfo",
            CacheKey::Listing(_) | CacheKey::Realisation(_) => "application/json",
            CacheKey::Nar(_) => "application/x-nix-nar",
            CacheKey::Log(_) => "text/plain; charset=utf-8",
            CacheKey::Index(f) if f.ends_with(".json") => "application/json",
            CacheKey::Index(_) => "application/zstd",
        }
    }

    /// The hash part of a narinfo or listing key.
    pub fn hash_part(&self) -> Option<&str> {
        match self {
            CacheKey::NarInfo(h) | CacheKey::Listing(h) => Some(h),
            _ => None,
        }
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dir().prefix(), self.file_name())
    }
}

impl std::str::FromStr for CacheKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<CacheKey, KeyError> {
        CacheKey::parse(s)
    }
}

fn check_hash_part(hash: &str) -> Result<(), &'static str> {
    if hash.len() == 32 && hash.bytes().all(|b| nixbase32::ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err("a hash part is 32 nixbase32 characters")
    }
}

/// `<name>.nar` or `<name>.nar.<ext>`, `<name>` of letters, digits, `-`, `_`, `+`, `=`.
fn check_nar_file(file: &str) -> Result<(), &'static str> {
    const WHY: &str = "a NAR file is named <hash>.nar or <hash>.nar.<compression extension>";
    let (stem, ext) = match file.split_once(".nar") {
        Some((stem, "")) => (stem, None),
        Some((stem, rest)) => (stem, Some(rest.strip_prefix('.').ok_or(WHY)?)),
        None => return Err(WHY),
    };
    let stem_ok = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+=".contains(&b));
    let ext_ok = ext.is_none_or(|e| {
        !e.is_empty() && e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if stem_ok && ext_ok {
        Ok(())
    } else {
        Err(WHY)
    }
}

/// A file name of store-path-name characters, not starting with a dot.
fn check_plain_name(file: &str) -> Result<(), &'static str> {
    let ok = !file.is_empty()
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=!:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("a name of letters, digits and +-._?=!: not starting with '.'")
    }
}

/// What a name found by listing a cache folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// A key of the cache.
    Key(CacheKey),
    /// A name that claims to be part of the cache (`*.narinfo`, `*.ls`, a name in `nar/`) but
    /// is not a valid key: reported by `verify`, never read as part of the cache.
    Stray { name: String, why: KeyError },
    /// Anything else (dot files, temporary files, a README): not part of the cache.
    Foreign,
}

/// Classifies a name listed in `dir` (a file name, without the folder).
pub fn classify(dir: KeyDir, file: &str) -> Listed {
    if file.starts_with('.') {
        return Listed::Foreign;
    }
    let name = format!("{}{file}", dir.prefix());
    match CacheKey::parse(&name) {
        Ok(key) => Listed::Key(key),
        Err(why) => {
            let claims = match dir {
                KeyDir::Root => file.ends_with(".narinfo") || file.ends_with(".ls"),
                _ => true,
            };
            if claims {
                Listed::Stray { name, why }
            } else {
                Listed::Foreign
            }
        }
    }
}

/// Where a narinfo's `URL` leads: a NAR key, or why it leads outside the cache.
pub fn resolve_url(url: &str) -> Result<CacheKey, &'static str> {
    if url.is_empty() {
        Err("it is empty")
    } else if url.starts_with('/') || url.starts_with('\\') {
        Err("it is absolute")
    } else if url.contains("://")
        || url
            .split('/')
            .next()
            .is_some_and(|first| first.contains(':'))
    {
        Err("it has a scheme")
    } else if url.contains('\\')
        || url.contains('\0')
        || url.contains('?')
        || url.contains('#')
        || url.contains('%')
    {
        Err("it contains '\\\\', NUL, '?', '#' or '%'")
    } else if url
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        Err("it has \"..\", \".\" or empty components")
    } else {
        match CacheKey::parse(url) {
            Ok(key @ CacheKey::Nar(_)) => Ok(key),
            _ => Err("it does not name a NAR file (nar/<hash>.nar[.<ext>])"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy";

    #[test]
    fn keys_round_trip() {
        for name in [
            "nix-cache-info".to_string(),
            format!("{H}.narinfo"),
            format!("{H}.ls"),
            "nar/1l2i7jpllg1rck99i3w4rkpxxxpgjf95gg25c1lcm13hamrrknxx.nar".into(),
            "nar/0865dqbf6plan6ys6m3i3id3vd7xxzxga60fgrh12znyclrcg12c.nar.zst".into(),
            "log/abc-hello.drv".into(),
            "realisations/sha256:abc!out.doi".into(),
        ] {
            let key = CacheKey::parse(&name).unwrap();
            assert_eq!(key.to_string(), name);
            assert_eq!(classify(key.dir(), &key.file_name()), Listed::Key(key));
        }
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        for name in [
            "",
            "bogus.narinfo",
            "5qk0fgkb9sfxmrbqjcs803wd2rjkaigE.narinfo",
            "nar/../nix-cache-info",
            "nar/.nar-x.tmp",
            "nar/x.nar.zst/y",
            "nar/x.tar",
            "nar/x.nar.",
            "nar/",
            "index.html",
            "js/app.js",
            "log/.hidden",
            "log/a b",
            "realisations/x.json",
            "/nix-cache-info",
        ] {
            assert!(CacheKey::parse(name).is_err(), "{name:?} accepted");
        }
        assert!(CacheKey::parse(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify(KeyDir::Root, "bogus.narinfo"),
            Listed::Stray { .. }
        ));
        assert_eq!(classify(KeyDir::Root, "README"), Listed::Foreign);
        assert_eq!(classify(KeyDir::Root, ".x.narinfo"), Listed::Foreign);
        assert!(matches!(
            classify(KeyDir::Nar, "junk"),
            Listed::Stray { .. }
        ));
        assert_eq!(classify(KeyDir::Nar, ".tmp-1"), Listed::Foreign);
    }

    #[test]
    fn urls() {
        assert_eq!(
            resolve_url("nar/abc.nar.xz").unwrap(),
            CacheKey::Nar("abc.nar.xz".into())
        );
        for url in [
            "",
            "/nar/a.nar",
            "http://x/nar/a.nar",
            "javascript:alert(1)",
            "nar/../a.nar",
            "nix-cache-info",
            "nar/a.nar?x",
            "x/a.nar",
        ] {
            assert!(resolve_url(url).is_err(), "{url:?}");
        }
    }
}
