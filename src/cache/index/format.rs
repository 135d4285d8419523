//! The index's objects, byte for byte: the manifest `nar-tool-index/index.json` and its shards
//! (documented in `docs/INDEX.md`). Encoding is deterministic: the same content gives the same
//! bytes and the same shard names. Decoding treats every byte as hostile: sizes, counts and ids
//! are checked before anything is allocated from them, and a shard must hash to its name.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IndexContent, IndexError};
use crate::nixbase32;
use crate::store_path::{StoreDir, StorePath};

/// The `format` field of a manifest.
pub const FORMAT: &str = "nar-tool-index";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// Entries per shard.
pub const SHARD_ENTRIES: usize = 512;
/// The largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// The largest shard read, compressed.
pub const MAX_SHARD_BYTES: u64 = 64 << 20;
/// The largest shard decompressed.
pub const MAX_SHARD_TEXT: u64 = 256 << 20;
/// The most entries an index may claim.
pub const MAX_ENTRIES: u64 = 1 << 28;
/// The first line of a shard's text.
const SHARD_MAGIC: &str = "nar-tool-index-shard 1";

/// The manifest: what the index holds and where its shards are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub store_dir: String,
    /// Paths with a narinfo.
    pub paths: u64,
    /// Entries: the paths, and the references that have no narinfo.
    pub entries: u64,
    pub shard_entries: u64,
    /// In entry order (entries are sorted by hash part).
    pub shards: Vec<ShardRef>,
}

impl Manifest {
    /// The shard that would hold the entry of `hash_part` (entries are sorted by hash part).
    pub fn shard_of_hash(&self, hash_part: &str) -> Option<usize> {
        let n = self
            .shards
            .partition_point(|s| s.first.as_str() <= hash_part);
        n.checked_sub(1)
    }

    /// The shard that holds entry `id`.
    pub fn shard_of_id(&self, id: u32) -> usize {
        (u64::from(id) / self.shard_entries) as usize
    }
}

/// One shard as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardRef {
    /// Its file name in `nar-tool-index/`: the nixbase32 SHA-256 of its bytes, then `.zst`.
    pub name: String,
    /// The hash part of its first entry.
    pub first: String,
    /// Its entries.
    pub count: u64,
    /// Its size in bytes (compressed).
    pub size: u64,
}

/// One entry of a shard: a store path, its sizes when it has a narinfo, and the ids of its
/// references and referrers (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntry {
    pub path: StorePath,
    /// `None`: a reference with no narinfo in the cache.
    pub nar_size: Option<u64>,
    pub file_size: Option<u64>,
    pub references: Vec<u32>,
    /// Its referrers' ids as written (see [`ShardEntry::referrer_ids`]).
    pub referrers: String,
}

/// A decoded shard: its entries, which have ids `first_id..first_id + entries.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub first_id: u64,
    pub entries: Vec<ShardEntry>,
}

/// The name a shard's bytes get.
pub fn shard_name(bytes: &[u8]) -> String {
    format!("{}.zst", nixbase32::encode(&Sha256::digest(bytes)))
}

/// Shards as they are stored: (name, bytes).
pub type NamedShards = Vec<(String, Vec<u8>)>;

/// Encodes an index: its manifest (JSON, with a final newline) and its shards.
pub fn encode(content: &IndexContent) -> (Vec<u8>, Manifest, NamedShards) {
    let paths: Vec<&StorePath> = content.all_paths();
    // A hash map, not a binary search: at a million paths, each probe of a search is a cache
    // miss.
    let ids: HashMap<&StorePath, u32> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u32))
        .collect();
    let id_of = |p: &StorePath| ids[p];
    let mut referrers: Vec<Vec<u32>> = vec![Vec::new(); paths.len()];
    for (path, info) in &content.paths {
        let from = id_of(path);
        for r in &info.references {
            referrers[id_of(r) as usize].push(from);
        }
    }
    let mut shards = Vec::new();
    let mut refs = Vec::new();
    for (n, chunk) in paths.chunks(SHARD_ENTRIES).enumerate() {
        let first_id = n * SHARD_ENTRIES;
        let mut text = format!("{SHARD_MAGIC} {first_id} {}\n", chunk.len());
        for (i, path) in chunk.iter().enumerate() {
            let id = first_id + i;
            let info = content.paths.get(*path);
            let size = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
            let list = |ids: &mut dyn Iterator<Item = u32>| {
                ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            };
            let mut own: Vec<u32> = info
                .map(|i| i.references.iter().map(id_of).collect())
                .unwrap_or_default();
            own.sort_unstable();
            referrers[id].sort_unstable();
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                path.base_name(),
                size(info.map(|i| i.nar_size)),
                size(info.and_then(|i| i.file_size)),
                list(&mut own.into_iter()),
                list(&mut referrers[id].iter().copied()),
            ));
        }
        let bytes = ruzstd::encoding::compress_to_vec(
            text.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let name = shard_name(&bytes);
        refs.push(ShardRef {
            name: name.clone(),
            first: chunk[0].hash_part().to_string(),
            count: chunk.len() as u64,
            size: bytes.len() as u64,
        });
        shards.push((name, bytes));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        store_dir: content.store_dir.as_str().into(),
        paths: content.paths.len() as u64,
        entries: paths.len() as u64,
        shard_entries: SHARD_ENTRIES as u64,
        shards: refs,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    json.push(b'\n');
    (json, manifest, shards)
}

/// Parses and checks a manifest.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, IndexError> {
    let bad = |why: String| IndexError::Manifest(why);
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad(format!(
            "it has {} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
            bytes.len()
        )));
    }
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(bad(format!(
            "format {:?} version {}; expected {FORMAT:?} version {VERSION}",
            m.format, m.version
        )));
    }
    StoreDir::new(&m.store_dir).map_err(|e| bad(format!("storeDir: {e}")))?;
    if m.entries > MAX_ENTRIES || m.paths > m.entries {
        return Err(bad(format!(
            "{} paths of {} entries (at most {MAX_ENTRIES} entries, paths no more than entries)",
            m.paths, m.entries
        )));
    }
    if m.shard_entries == 0 || m.shard_entries > 1 << 20 {
        return Err(bad(format!(
            "shardEntries {} is not in 1..=1048576",
            m.shard_entries
        )));
    }
    let expected_shards = m.entries.div_ceil(m.shard_entries);
    if m.shards.len() as u64 != expected_shards {
        return Err(bad(format!(
            "{} shards for {} entries of {} each; expected {expected_shards}",
            m.shards.len(),
            m.entries,
            m.shard_entries
        )));
    }
    let mut total = 0u64;
    let mut previous: Option<&str> = None;
    for (n, s) in m.shards.iter().enumerate() {
        let last = n + 1 == m.shards.len();
        let count_ok = if last {
            s.count >= 1 && s.count <= m.shard_entries
        } else {
            s.count == m.shard_entries
        };
        if !count_ok {
            return Err(bad(format!("shard {n} has {} entries", s.count)));
        }
        if !is_shard_name(&s.name) {
            return Err(bad(format!(
                "shard {n} is named {:?}, not <52 nixbase32 characters>.zst",
                s.name
            )));
        }
        if s.size > MAX_SHARD_BYTES {
            return Err(bad(format!("shard {n} claims {} bytes", s.size)));
        }
        if nixbase32::decode_array::<20>(&s.first).is_err() {
            return Err(bad(format!("shard {n}'s first hash part {:?}", s.first)));
        }
        if previous.is_some_and(|p| p >= s.first.as_str()) {
            return Err(bad(format!("shard {n} is out of hash part order")));
        }
        previous = Some(&s.first);
        total += s.count;
    }
    if total != m.entries {
        return Err(bad(format!(
            "its shards hold {total} entries, not {}",
            m.entries
        )));
    }
    Ok(m)
}

/// Whether `name` is a shard's name: `<52 nixbase32 characters>.zst`.
pub fn is_shard_name(name: &str) -> bool {
    name.strip_suffix(".zst")
        .is_some_and(|h| h.len() == 52 && h.bytes().all(nixbase32::is_valid_char))
}

/// Decompresses a shard's bytes into its text, refusing more than the limit given: the core's
/// [`decompress`], or a native host's faster one (`IndexReader::with_decompressor`). The text
/// is decoded by [`decode_shard_with`] either way.
pub type Decompressor = fn(&[u8], u64) -> Result<Vec<u8>, String>;

/// The core's decompressor (pure Rust, on every target).
pub fn decompress(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    crate::compression::decode_all(crate::compression::Compression::Zstd, bytes, limit)
        .map_err(|e| e.to_string())
}

/// Decodes shard `n` of `manifest` from its bytes, checking them against the manifest.
pub fn decode_shard(manifest: &Manifest, n: usize, bytes: &[u8]) -> Result<Shard, IndexError> {
    decode_shard_with(manifest, n, bytes, decompress)
}

/// [`decode_shard`], decompressing with `decompress`.
pub fn decode_shard_with(
    manifest: &Manifest,
    n: usize,
    bytes: &[u8],
    decompress: Decompressor,
) -> Result<Shard, IndexError> {
    let shard = &manifest.shards[n];
    let bad = |why: String| IndexError::Shard {
        name: shard.name.clone(),
        why,
    };
    if bytes.len() as u64 != shard.size || shard_name(bytes) != shard.name {
        return Err(bad(format!(
            "its {} bytes are not the {} bytes the manifest names (a newer index replaced it?)",
            bytes.len(),
            shard.size
        )));
    }
    let text = decompress(bytes, MAX_SHARD_TEXT).map_err(|e| bad(format!("decompressing: {e}")))?;
    let text = std::str::from_utf8(&text).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let first_id = n as u64 * manifest.shard_entries;
    let mut lines = text.split_terminator('\n');
    let header = format!("{SHARD_MAGIC} {first_id} {}", shard.count);
    if lines.next() != Some(header.as_str()) {
        return Err(bad(format!("its first line is not {header:?}")));
    }
    let mut entries = Vec::with_capacity(shard.count as usize);
    for (i, line) in lines.enumerate() {
        let at = |why: String| bad(format!("line {}: {why}", i + 2));
        if i as u64 >= shard.count {
            return Err(at(format!("more than {} entries", shard.count)));
        }
        let entry = decode_entry(line, manifest.entries).map_err(at)?;
        if entries.is_empty() && entry.path.hash_part() != shard.first {
            return Err(at(format!(
                "its first entry is not {} as the manifest says",
                shard.first
            )));
        }
        if entries
            .last()
            .is_some_and(|p: &ShardEntry| p.path.hash_part() >= entry.path.hash_part())
        {
            return Err(at("entries are not in hash part order".into()));
        }
        entries.push(entry);
    }
    if entries.len() as u64 != shard.count {
        return Err(bad(format!(
            "{} entries; the manifest says {}",
            entries.len(),
            shard.count
        )));
    }
    Ok(Shard { first_id, entries })
}

fn decode_entry(line: &str, entries: u64) -> Result<ShardEntry, String> {
    // One pass over the line (a popular path's referrers make it megabytes long).
    let mut fields = line.split('\t');
    let mut field = || fields.next();
    let (Some(path), Some(nar_size), Some(file_size), Some(references), Some(referrers), None) =
        (field(), field(), field(), field(), field(), field())
    else {
        return Err(format!(
            "{} tab-separated fields, not 5",
            line.matches('\t').count() + 1
        ));
    };
    let path = StorePath::from_base_name(path).map_err(|e| e.to_string())?;
    let size = |s: &str, what: &str| -> Result<Option<u64>, String> {
        if s == "-" {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("{what} {s:?} is not a number or -"))
        }
    };
    let nar_size = size(nar_size, "NAR size")?;
    let file_size = size(file_size, "file size")?;
    let references = parse_ids(references, entries, "reference")?;
    if nar_size.is_none() && (file_size.is_some() || !references.is_empty()) {
        return Err("an entry without a narinfo has a file size or references".into());
    }
    // Referrers are read when asked for (a popular path has a million): here only their
    // characters are checked.
    if !referrers.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return Err("referrer ids are not comma-separated numbers".into());
    }
    Ok(ShardEntry {
        path,
        nar_size,
        file_size,
        references,
        referrers: referrers.to_string(),
    })
}

/// Comma-separated ids, each below `entries`, strictly ascending.
fn parse_ids(s: &str, entries: u64, what: &str) -> Result<Vec<u32>, String> {
    let mut out: Vec<u32> = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    // Bytes, by hand: a lookup decodes thousands of ids, and `str::split` with `parse` cost
    // more than the rest of a shard's decoding. A final comma ends the list, as before.
    let s = s.as_bytes();
    for id in s.strip_suffix(b",").unwrap_or(s).split(|&b| b == b',') {
        let value = (!id.is_empty() && id.len() <= 10 && id.iter().all(u8::is_ascii_digit))
            .then(|| id.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0')))
            .filter(|&v| v < entries.min(u64::from(u32::MAX) + 1));
        let id = value.ok_or_else(|| {
            format!(
                "{what} id {:?} is not an entry",
                String::from_utf8_lossy(id)
            )
        })? as u32;
        if out.last().is_some_and(|&last| last >= id) {
            return Err(format!("{what} ids are not ascending"));
        }
        out.push(id);
    }
    Ok(out)
}

impl ShardEntry {
    /// The ids of its referrers, of an index of `entries` entries.
    pub fn referrer_ids(&self, entries: u64) -> Result<Vec<u32>, IndexError> {
        parse_ids(&self.referrers, entries, "referrer").map_err(|why| IndexError::Shard {
            name: format!("of {}", self.path),
            why,
        })
    }
}
