//! Every loaded entry of an index, in columns: what a browser holds to search, sort and page
//! through a million paths (about 100 bytes an entry: the base name, two sizes and the reference
//! ids; no per-entry allocation). Shards are added in any order as they arrive, each decoded by
//! [`format::decode_shard`] and kept only in this form; every question is answered from what is
//! loaded, and says which shards it still needs where that matters (a closure, referrers).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::format::{self, Manifest, Shard};
use super::reader::PathRecord;
use super::IndexError;
use crate::cache::graph::{Graph, Weight};
use crate::store_path::{split_name_version, StoreDir, StorePath, HASH_PART_LEN};

/// A size column's mark for "none".
const NONE: u64 = u64::MAX;

/// One shard's entries.
#[derive(Debug, Clone)]
struct Columns {
    first_id: u32,
    /// The base names, one after the other; entry `i`'s is `bases[base_end[i-1]..base_end[i]]`.
    bases: String,
    base_end: Vec<u32>,
    nar_size: Vec<u64>,
    file_size: Vec<u64>,
    /// Entry `i`'s reference ids are `refs[ref_end[i-1]..ref_end[i]]`.
    ref_end: Vec<u32>,
    refs: Vec<u32>,
}

impl Columns {
    fn of(shard: &Shard) -> Columns {
        let n = shard.entries.len();
        let mut c = Columns {
            first_id: shard.first_id as u32,
            bases: String::new(),
            base_end: Vec::with_capacity(n),
            nar_size: Vec::with_capacity(n),
            file_size: Vec::with_capacity(n),
            ref_end: Vec::with_capacity(n),
            refs: Vec::new(),
        };
        for e in &shard.entries {
            c.bases.push_str(e.path.base_name());
            c.base_end.push(c.bases.len() as u32);
            c.nar_size.push(e.nar_size.unwrap_or(NONE));
            c.file_size.push(e.file_size.unwrap_or(NONE));
            c.refs.extend_from_slice(&e.references);
            c.ref_end.push(c.refs.len() as u32);
        }
        c.bases.shrink_to_fit();
        c.refs.shrink_to_fit();
        c
    }

    fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        start..ends[i] as usize
    }

    fn row(&self, i: usize) -> Row<'_> {
        let some = |s: u64| (s != NONE).then_some(s);
        Row {
            id: self.first_id + i as u32,
            base_name: &self.bases[Self::span(&self.base_end, i)],
            nar_size: some(self.nar_size[i]),
            file_size: some(self.file_size[i]),
            references: &self.refs[Self::span(&self.ref_end, i)],
        }
    }

    fn len(&self) -> usize {
        self.base_end.len()
    }
}

/// One entry as the table holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    pub id: u32,
    pub base_name: &'a str,
    /// `None`: a reference without a narinfo in the cache.
    pub nar_size: Option<u64>,
    pub file_size: Option<u64>,
    pub references: &'a [u32],
}

impl<'a> Row<'a> {
    pub fn hash_part(&self) -> &'a str {
        &self.base_name[..HASH_PART_LEN]
    }

    pub fn name(&self) -> &'a str {
        &self.base_name[HASH_PART_LEN + 1..]
    }

    /// The name without its version, and the version (`hello-2.12` → `hello`, `2.12`).
    pub fn name_and_version(&self) -> (&'a str, &'a str) {
        split_name_version(self.name())
    }

    /// Whether the cache has its narinfo.
    pub fn present(&self) -> bool {
        self.nar_size.is_some()
    }
}

/// What rows may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// The name without its version, then the version.
    Name,
    Version,
    HashPart,
    NarSize,
    FileSize,
    References,
}

impl SortKey {
    pub fn parse(key: &str) -> Option<SortKey> {
        Some(match key {
            "name" => SortKey::Name,
            "version" => SortKey::Version,
            "hash" | "hashPart" => SortKey::HashPart,
            "narSize" => SortKey::NarSize,
            "fileSize" => SortKey::FileSize,
            "refs" | "references" => SortKey::References,
            _ => return None,
        })
    }
}

/// The entries of an index loaded so far.
#[derive(Debug, Clone)]
pub struct IndexTable {
    manifest: Manifest,
    store_dir: StoreDir,
    shards: Vec<Option<Columns>>,
    loaded: usize,
    /// Referrer ids of every entry (`referrer_end`, `referrers`), built once every shard is in.
    referrers: Option<(Vec<u32>, Vec<u32>)>,
    /// Every loaded entry with a narinfo in the order of the last [`IndexTable::query`] (kept
    /// until a shard is added or another order is asked for): a search filters it, not sorts.
    order: Option<(SortKey, bool, Vec<u32>)>,
    decompress: format::Decompressor,
}

impl IndexTable {
    /// An empty table of the index whose manifest this is.
    pub fn new(manifest: &[u8]) -> Result<IndexTable, IndexError> {
        let manifest = format::decode_manifest(manifest)?;
        let store_dir = StoreDir::new(&manifest.store_dir)
            .map_err(|e| IndexError::Manifest(format!("storeDir: {e}")))?;
        Ok(IndexTable {
            shards: vec![None; manifest.shards.len()],
            manifest,
            store_dir,
            loaded: 0,
            referrers: None,
            order: None,
            decompress: format::decompress,
        })
    }

    /// The table, decompressing shards with `decompress` (a native host's faster one) instead
    /// of the core's [`format::decompress`].
    pub fn with_decompressor(mut self, decompress: format::Decompressor) -> IndexTable {
        self.decompress = decompress;
        self
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// Checks and decodes shard `n` from its bytes, and keeps its entries.
    pub fn add_shard(&mut self, n: usize, bytes: &[u8]) -> Result<(), IndexError> {
        if n >= self.shards.len() {
            return Err(IndexError::Read(format!(
                "shard {n} of {}",
                self.shards.len()
            )));
        }
        if self.shards[n].is_some() {
            return Ok(());
        }
        let shard = format::decode_shard_with(&self.manifest, n, bytes, self.decompress)?;
        self.shards[n] = Some(Columns::of(&shard));
        self.loaded += 1;
        self.order = None;
        Ok(())
    }

    /// Shards loaded so far.
    pub fn loaded_shards(&self) -> usize {
        self.loaded
    }

    /// Whether every shard is loaded.
    pub fn is_complete(&self) -> bool {
        self.loaded == self.shards.len()
    }

    /// The shards not loaded yet, in order.
    pub fn missing_shards(&self) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&n| self.shards[n].is_none())
            .collect()
    }

    /// The shard that would hold `hash_part`.
    pub fn shard_of_hash(&self, hash_part: &str) -> Option<usize> {
        self.manifest.shard_of_hash(hash_part)
    }

    /// Entry `id`, or the shard it needs (`Err`); `Ok(None)` if there is no such id.
    pub fn row(&self, id: u32) -> Result<Option<Row<'_>>, usize> {
        if u64::from(id) >= self.manifest.entries {
            return Ok(None);
        }
        let n = self.manifest.shard_of_id(id);
        let columns = self.shards[n].as_ref().ok_or(n)?;
        Ok(Some(columns.row((id - columns.first_id) as usize)))
    }

    /// The entry with `hash_part`, or the shard it needs (`Err`).
    pub fn find(&self, hash_part: &str) -> Result<Option<Row<'_>>, usize> {
        let Some(n) = self.shard_of_hash(hash_part) else {
            return Ok(None);
        };
        let columns = self.shards[n].as_ref().ok_or(n)?;
        let (mut lo, mut hi) = (0, columns.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let row = columns.row(mid);
            match row.hash_part().cmp(hash_part) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Some(row)),
            }
        }
        Ok(None)
    }

    /// The full store path of a row.
    pub fn store_path(&self, row: &Row) -> String {
        format!("{}/{}", self.store_dir.as_str(), row.base_name)
    }

    /// Every loaded entry that has a narinfo.
    pub fn present_rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.shards
            .iter()
            .flatten()
            .flat_map(|c| (0..c.len()).map(move |i| c.row(i)))
            .filter(|r| r.present())
    }

    /// The ids of the loaded entries with a narinfo whose base name (hash part and name)
    /// contains `needle`, ignoring ASCII case; every one for an empty needle.
    pub fn select(&self, needle: &str) -> Vec<u32> {
        let needle = needle.to_ascii_lowercase();
        self.present_rows()
            .filter(|r| needle.is_empty() || contains_ignoring_case(r.base_name, &needle))
            .map(|r| r.id)
            .collect()
    }

    /// The loaded entries with a narinfo whose base name contains `needle` (any ASCII case;
    /// all for an empty one), sorted as [`IndexTable::sort`] sorts. Searching again in the same
    /// order only filters: the order of every entry is kept until a shard is added.
    pub fn query(&mut self, needle: &str, key: SortKey, descending: bool) -> Vec<u32> {
        let stale = !matches!(&self.order, Some((k, d, _)) if *k == key && *d == descending);
        if stale {
            let mut ids = self.select("");
            self.sort(&mut ids, key, descending);
            self.order = Some((key, descending, ids));
        }
        let (_, _, ids) = self.order.as_ref().expect("set above");
        if needle.is_empty() {
            return ids.clone();
        }
        let needle = needle.to_ascii_lowercase();
        ids.iter()
            .copied()
            .filter(|&id| {
                self.row(id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| contains_ignoring_case(r.base_name, &needle))
            })
            .collect()
    }

    /// Sorts ids of loaded entries by `key` (ascending, or descending), ties by name and version,
    /// then by hash part. Entries without the key's value (no file size, no version) go last
    /// either way. Each entry's key is read once, not at every comparison.
    pub fn sort(&self, ids: &mut [u32], key: SortKey, descending: bool) {
        struct Keyed<'a> {
            /// The key's value for sizes and counts; `None` goes last.
            value: Option<u64>,
            pname: &'a str,
            version: &'a str,
            hash: &'a str,
            id: u32,
        }
        let mut keyed: Vec<Keyed> = ids
            .iter()
            .filter_map(|&id| self.row(id).ok().flatten())
            .map(|r| {
                let (pname, version) = r.name_and_version();
                let value = match key {
                    SortKey::NarSize => r.nar_size,
                    SortKey::FileSize => r.file_size,
                    SortKey::References => Some(r.references.len() as u64),
                    _ => None,
                };
                Keyed {
                    value,
                    pname,
                    version,
                    hash: r.hash_part(),
                    id: r.id,
                }
            })
            .collect();
        let flip = |o: Ordering| if descending { o.reverse() } else { o };
        let by_name = |a: &Keyed, b: &Keyed| {
            compare_ignoring_case(a.pname, b.pname)
                .then_with(|| a.version.cmp(b.version))
                .then_with(|| a.hash.cmp(b.hash))
        };
        // Present values first (in the asked order), absent ones last.
        let last_if_absent = |a: bool, b: bool, present: &dyn Fn() -> Ordering| match (a, b) {
            (true, true) => present(),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => Ordering::Equal,
        };
        keyed.sort_unstable_by(|a, b| match key {
            SortKey::Name => flip(by_name(a, b)),
            SortKey::HashPart => flip(a.hash.cmp(b.hash)),
            SortKey::Version => {
                last_if_absent(!a.version.is_empty(), !b.version.is_empty(), &|| {
                    flip(a.version.cmp(b.version))
                })
                .then_with(|| by_name(a, b))
            }
            _ => last_if_absent(a.value.is_some(), b.value.is_some(), &|| {
                flip(a.value.cmp(&b.value))
            })
            .then_with(|| by_name(a, b)),
        });
        for (slot, k) in ids.iter_mut().zip(keyed) {
            *slot = k.id;
        }
    }

    /// The NAR and file sizes of `ids` together.
    pub fn totals(&self, ids: &[u32]) -> Weight {
        let mut w = Weight::default();
        for r in ids.iter().filter_map(|&id| self.row(id).ok().flatten()) {
            w += Weight {
                nar_size: r.nar_size.unwrap_or(0),
                file_size: r.file_size.unwrap_or(0),
            };
        }
        w
    }

    /// The ids of the entries that reference `id` (itself included if it refers to itself),
    /// ascending; or the shards still missing (they are built from every entry's references).
    pub fn referrers(&mut self, id: u32) -> Result<&[u32], Vec<usize>> {
        self.build_referrers()?;
        Ok(self.built_referrers(id).unwrap_or(&[]))
    }

    /// Builds every entry's referrers (once), from every shard; or the shards still missing.
    pub fn build_referrers(&mut self) -> Result<(), Vec<usize>> {
        if !self.is_complete() {
            return Err(self.missing_shards());
        }
        if self.referrers.is_some() {
            return Ok(());
        }
        let n = self.manifest.entries as usize;
        let mut count = vec![0u32; n];
        for &r in self.shards.iter().flatten().flat_map(|c| c.refs.iter()) {
            count[r as usize] += 1;
        }
        let mut ends = Vec::with_capacity(n);
        let mut total = 0u32;
        for c in &count {
            total += c;
            ends.push(total);
        }
        let mut fill: Vec<u32> = ends.iter().zip(&count).map(|(e, c)| e - c).collect();
        let mut ids = vec![0u32; total as usize];
        // Shards in order, entries in order: each list comes out ascending.
        for c in self.shards.iter().flatten() {
            for i in 0..c.len() {
                for &r in &c.refs[Columns::span(&c.ref_end, i)] {
                    ids[fill[r as usize] as usize] = c.first_id + i as u32;
                    fill[r as usize] += 1;
                }
            }
        }
        self.referrers = Some((ends, ids));
        Ok(())
    }

    /// The referrers of `id` once [`IndexTable::build_referrers`] has built them.
    pub fn built_referrers(&self, id: u32) -> Option<&[u32]> {
        let (ends, ids) = self.referrers.as_ref()?;
        Some(if (id as usize) < ends.len() {
            &ids[Columns::span(ends, id as usize)]
        } else {
            &[]
        })
    }

    /// The entries with a narinfo whose name starts with `needle` (sorted by name), then those
    /// whose name contains it elsewhere (sorted by name), among the loaded ones; as
    /// [`IndexReader::search_name`](super::reader::IndexReader::search_name) answers.
    pub fn search_name(&self, needle: &str) -> Vec<u32> {
        let mut prefix = Vec::new();
        let mut inside = Vec::new();
        for row in self.present_rows() {
            let name = row.name();
            if name.starts_with(needle) {
                prefix.push((name, row.id));
            } else if name.contains(needle) {
                inside.push((name, row.id));
            }
        }
        prefix.sort_unstable();
        inside.sort_unstable();
        prefix.into_iter().chain(inside).map(|(_, id)| id).collect()
    }

    /// Entry `id` with its references (and, once built, its referrers) named, as
    /// [`IndexReader::record`](super::reader::IndexReader::record) gives it; `None` if it or
    /// an entry it names is not loaded.
    pub fn record(&self, id: u32, with_referrers: bool) -> Option<PathRecord> {
        self.record_with_referrers(id, with_referrers.then_some(usize::MAX))
    }

    /// [`IndexTable::record`] naming at most `max` referrers (the first, in id order).
    pub fn record_with_referrers(&self, id: u32, max: Option<usize>) -> Option<PathRecord> {
        let row = self.row(id).ok().flatten()?;
        let names = |ids: &[u32]| -> Option<Vec<String>> {
            ids.iter()
                .map(|&r| self.row(r).ok().flatten().map(|r| self.store_path(&r)))
                .collect()
        };
        let referrers = match max {
            Some(max) => {
                let ids = self.built_referrers(id)?;
                Some(names(&ids[..ids.len().min(max)])?)
            }
            None => None,
        };
        Some(PathRecord {
            store_path: self.store_path(&row),
            hash_part: row.hash_part().into(),
            name: row.name().into(),
            present: row.present(),
            nar_size: row.nar_size,
            file_size: row.file_size,
            references: names(row.references)?,
            referrers,
        })
    }

    /// The reference graph of `roots`' closure, with each path's sizes; or the shards it needs
    /// (ask again once they are added: a closure may need several rounds).
    pub fn closure_graph(&self, roots: &[u32]) -> Result<Graph, BTreeSet<usize>> {
        let mut seen: BTreeSet<u32> = roots.iter().copied().collect();
        let mut work: Vec<u32> = roots.to_vec();
        let mut need = BTreeSet::new();
        let mut rows = Vec::new();
        while let Some(id) = work.pop() {
            match self.row(id) {
                Ok(Some(row)) => {
                    if row.present() {
                        rows.push(row);
                        work.extend(row.references.iter().filter(|&&r| seen.insert(r)));
                    }
                }
                Ok(None) => {}
                Err(n) => {
                    need.insert(n);
                }
            }
        }
        for row in &rows {
            for &r in row.references {
                if let Err(n) = self.row(r) {
                    need.insert(n);
                }
            }
        }
        if !need.is_empty() {
            return Err(need);
        }
        let path = |base: &str| StorePath::from_base_name(base).expect("checked when decoded");
        let mut graph = Graph::new();
        for row in rows {
            let references = row
                .references
                .iter()
                .filter_map(|&r| self.row(r).ok().flatten())
                .map(|r| path(r.base_name));
            graph.insert_weighted(
                path(row.base_name),
                references,
                Weight {
                    nar_size: row.nar_size.unwrap_or(0),
                    file_size: row.file_size.unwrap_or(0),
                },
            );
        }
        Ok(graph)
    }
}

/// Whether `hay` contains `needle` (already lowercase), ignoring ASCII case.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    needle.len() <= hay.len()
        && hay.windows(needle.len()).any(|w| {
            w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

fn compare_ignoring_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests;
