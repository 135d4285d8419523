//! Signing the narinfos of a cache where they are (a directory, a bucket): each is read with its
//! ETag, signed, and replaced only if nobody changed it meanwhile, so a concurrent writer's
//! narinfo is never overwritten with a stale one.

use std::io::{self, Read};

use super::layout::CacheKey;
use super::storage::{list_narinfo_names, StorageWrite};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use crate::signing::SecretKey;
use crate::store_path::StoreDir;

/// Which narinfos to sign.
pub enum Which<'a> {
    /// Every narinfo of the cache.
    All,
    /// These: hash parts, `<hashpart>.narinfo` names, store paths or their base names.
    Named(&'a [String]),
}

/// What was signed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signed {
    pub narinfos: usize,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// The narinfo key a user's name stands for.
fn narinfo_key(name: &str, store_dir: &StoreDir) -> io::Result<CacheKey> {
    let hash_part = if let Some(h) = name.strip_suffix(".narinfo") {
        h.to_string()
    } else if let Ok((path, _)) = store_dir.parse_path_prefix(name) {
        path.hash_part().to_string()
    } else {
        name.split('-').next().unwrap_or_default().to_string()
    };
    match CacheKey::parse(&format!("{hash_part}.narinfo")) {
        Ok(key @ CacheKey::NarInfo(_)) => Ok(key),
        _ => Err(invalid(format!(
            "{name:?} names no narinfo (expected a hash part, <hashpart>.narinfo or a store path)"
        ))),
    }
}

/// Adds a signature by each of `keys` to the narinfos `which` of `storage`.
pub fn sign_narinfos(
    storage: &dyn StorageWrite,
    keys: &[SecretKey],
    which: Which<'_>,
    store_dir: &StoreDir,
) -> io::Result<Signed> {
    let keys_of: Vec<CacheKey> = match which {
        Which::All => list_narinfo_names(storage)?
            .iter()
            .map(|n| narinfo_key(n, store_dir))
            .collect::<io::Result<_>>()?,
        Which::Named(names) => names
            .iter()
            .map(|n| narinfo_key(n, store_dir))
            .collect::<io::Result<_>>()?,
    };
    let mut signed = Signed::default();
    for key in keys_of {
        let where_ = storage.locate(&key);
        let object = storage.open(&key)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{where_}: no such narinfo"),
            )
        })?;
        if object.meta.size > MAX_NARINFO_SIZE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{where_}: {} bytes, more than a narinfo may have ({MAX_NARINFO_SIZE})",
                    object.meta.size
                ),
            ));
        }
        let mut bytes = Vec::new();
        object
            .body
            .take(MAX_NARINFO_SIZE as u64 + 1)
            .read_to_end(&mut bytes)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{where_}: not UTF-8 text"),
            )
        })?;
        let mut info = NarInfo::parse(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{where_}: {e}")))?;
        for k in keys {
            info.sign(k).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{where_}: {e}"))
            })?;
        }
        if !storage.replace_if_unchanged(
            &key,
            info.to_text().as_bytes(),
            Some(&object.meta.etag),
        )? {
            return Err(io::Error::other(format!(
                "{where_} changed while it was being signed; run again"
            )));
        }
        signed.narinfos += 1;
    }
    Ok(signed)
}
