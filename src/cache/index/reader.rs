//! Reading an index a shard at a time. [`IndexReader`] holds the manifest and the shards given
//! to it so far; a question it cannot answer yet says which shards it needs ([`Step::Need`]), so
//! a synchronous host ([`IndexReader::answer`]) and an asynchronous one (the browser, fetching
//! shards itself) drive the same code. A lookup by hash part needs one shard, and the shards of
//! the paths it names.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::format::{self, Manifest, Shard, ShardEntry};
use super::IndexError;
use crate::cache::graph::Graph;
use crate::store_path::{StoreDir, StorePath};

/// Where an index's objects come from: `name` is `index.json` or a shard's name, inside
/// `nar-tool-index/`. `Ok(None)`: it is not there.
pub trait IndexSource {
    fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, IndexError>;
}

/// An index held in memory, encoded (a cache without an index, read whole, answers through
/// the same reader).
pub struct Encoded {
    pub manifest: Vec<u8>,
    pub shards: Vec<(String, Vec<u8>)>,
}

impl Encoded {
    pub fn new(content: &super::IndexContent) -> Encoded {
        let (manifest, _, shards) = format::encode(content);
        Encoded { manifest, shards }
    }

    /// A reader of it.
    pub fn reader(&self) -> IndexReader {
        IndexReader::new(&self.manifest).expect("an encoded index decodes")
    }
}

impl IndexSource for Encoded {
    fn read(&self, name: &str, _limit: u64) -> Result<Option<Vec<u8>>, IndexError> {
        if name == super::publish::MANIFEST {
            return Ok(Some(self.manifest.clone()));
        }
        Ok(self
            .shards
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes.clone()))
    }
}

/// An answer, or the shards it still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    Done(T),
    Need(BTreeSet<usize>),
}

/// What the index says of one path, its references and referrers named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathRecord {
    pub store_path: String,
    pub hash_part: String,
    pub name: String,
    /// Whether the cache has its narinfo (else it is only referenced).
    pub present: bool,
    pub nar_size: Option<u64>,
    pub file_size: Option<u64>,
    pub references: Vec<String>,
    /// Only when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers: Option<Vec<String>>,
}

/// An index being read.
#[derive(Debug, Clone)]
pub struct IndexReader {
    manifest: Manifest,
    store_dir: StoreDir,
    shards: HashMap<usize, Shard>,
    decompress: format::Decompressor,
}

impl IndexReader {
    /// A reader of the index whose manifest this is.
    pub fn new(manifest: &[u8]) -> Result<IndexReader, IndexError> {
        let manifest = format::decode_manifest(manifest)?;
        let store_dir = StoreDir::new(&manifest.store_dir)
            .map_err(|e| IndexError::Manifest(format!("storeDir: {e}")))?;
        Ok(IndexReader {
            manifest,
            store_dir,
            shards: HashMap::new(),
            decompress: format::decompress,
        })
    }

    /// The reader, decompressing shards with `decompress` (a native host's faster one) instead
    /// of the core's [`format::decompress`].
    pub fn with_decompressor(mut self, decompress: format::Decompressor) -> IndexReader {
        self.decompress = decompress;
        self
    }

    /// Opens the index of `source`; `Ok(None)` if it has none.
    pub fn open(source: &dyn IndexSource) -> Result<Option<IndexReader>, IndexError> {
        match source.read(super::publish::MANIFEST, format::MAX_MANIFEST_BYTES)? {
            Some(bytes) => IndexReader::new(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// Decodes shard `n` from its bytes and keeps it.
    pub fn add_shard(&mut self, n: usize, bytes: &[u8]) -> Result<(), IndexError> {
        if n >= self.manifest.shards.len() {
            return Err(IndexError::Read(format!(
                "shard {n} of {}",
                self.manifest.shards.len()
            )));
        }
        let shard = format::decode_shard_with(&self.manifest, n, bytes, self.decompress)?;
        self.shards.insert(n, shard);
        Ok(())
    }

    /// Answers `question`, reading the shards it needs from `source`.
    pub fn answer<T>(
        &mut self,
        source: &dyn IndexSource,
        question: impl Fn(&IndexReader) -> Step<T>,
    ) -> Result<T, IndexError> {
        loop {
            match question(self) {
                Step::Done(answer) => return Ok(answer),
                Step::Need(shards) => {
                    for n in shards {
                        let name = self.manifest.shards[n].name.clone();
                        let bytes =
                            source
                                .read(&name, format::MAX_SHARD_BYTES)?
                                .ok_or_else(|| IndexError::Shard {
                                    name,
                                    why: "it is missing (a newer index replaced it?)".into(),
                                })?;
                        self.add_shard(n, &bytes)?;
                    }
                }
            }
        }
    }

    /// The shard that holds `hash_part` if any entry has it.
    pub fn shard_for_hash(&self, hash_part: &str) -> Option<usize> {
        self.manifest.shard_of_hash(hash_part)
    }

    fn shard_for_id(&self, id: u32) -> usize {
        self.manifest.shard_of_id(id)
    }

    /// Entry `id`, or the shard it needs.
    pub fn entry(&self, id: u32) -> Result<&ShardEntry, usize> {
        let n = self.shard_for_id(id);
        let shard = self.shards.get(&n).ok_or(n)?;
        Ok(&shard.entries[(u64::from(id) - shard.first_id) as usize])
    }

    /// The id of the entry with `hash_part`.
    pub fn find(&self, hash_part: &str) -> Step<Option<u32>> {
        let Some(n) = self.shard_for_hash(hash_part) else {
            return Step::Done(None);
        };
        let Some(shard) = self.shards.get(&n) else {
            return Step::Need([n].into());
        };
        Step::Done(
            shard
                .entries
                .binary_search_by(|e| e.path.hash_part().cmp(hash_part))
                .ok()
                .map(|i| (shard.first_id + i as u64) as u32),
        )
    }

    /// The paths of `ids`, or the shards they need.
    fn paths_of(&self, ids: &[u32]) -> Step<Vec<&StorePath>> {
        let mut need = BTreeSet::new();
        let mut paths = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.entry(id) {
                Ok(e) => paths.push(&e.path),
                Err(n) => {
                    need.insert(n);
                }
            }
        }
        if need.is_empty() {
            Step::Done(paths)
        } else {
            Step::Need(need)
        }
    }

    /// Entry `id` with its references (and referrers, if asked) named; an error if its
    /// referrers are not ids of the index.
    pub fn record(&self, id: u32, with_referrers: bool) -> Step<Result<PathRecord, IndexError>> {
        let entry = match self.entry(id) {
            Ok(e) => e,
            Err(n) => return Step::Need([n].into()),
        };
        let referrer_ids = match with_referrers {
            true => match entry.referrer_ids(self.manifest.entries) {
                Ok(ids) => ids,
                Err(e) => return Step::Done(Err(e)),
            },
            false => Vec::new(),
        };
        let mut need = BTreeSet::new();
        let mut names = |ids: &[u32]| match self.paths_of(ids) {
            Step::Done(paths) => paths
                .into_iter()
                .map(|p| self.store_dir.display(p))
                .collect(),
            Step::Need(n) => {
                need.extend(n);
                Vec::new()
            }
        };
        let references = names(&entry.references);
        let referrers = names(&referrer_ids);
        if !need.is_empty() {
            return Step::Need(need);
        }
        Step::Done(Ok(PathRecord {
            store_path: self.store_dir.display(&entry.path),
            hash_part: entry.path.hash_part().into(),
            name: entry.path.name().into(),
            present: entry.nar_size.is_some(),
            nar_size: entry.nar_size,
            file_size: entry.file_size,
            references,
            referrers: with_referrers.then_some(referrers),
        }))
    }

    fn every_shard(&self) -> Option<BTreeSet<usize>> {
        let missing: BTreeSet<usize> = (0..self.manifest.shards.len())
            .filter(|n| !self.shards.contains_key(n))
            .collect();
        (!missing.is_empty()).then_some(missing)
    }

    /// Every shard loaded.
    pub fn all_shards(&self) -> Step<()> {
        match self.every_shard() {
            Some(need) => Step::Need(need),
            None => Step::Done(()),
        }
    }

    /// The shards loaded so far, in order.
    pub fn loaded_shards(&self) -> Vec<&Shard> {
        let mut shards: Vec<(&usize, &Shard)> = self.shards.iter().collect();
        shards.sort_by_key(|(n, _)| **n);
        shards.into_iter().map(|(_, s)| s).collect()
    }

    /// The entries with a narinfo whose name starts with `needle` (sorted by name), then those
    /// whose name contains it elsewhere (sorted by name). Needs every shard.
    pub fn search_name(&self, needle: &str) -> Step<Vec<u32>> {
        if let Some(need) = self.every_shard() {
            return Step::Need(need);
        }
        let mut prefix = Vec::new();
        let mut inside = Vec::new();
        for shard in self.shards.values() {
            for (i, e) in shard.entries.iter().enumerate() {
                if e.nar_size.is_none() {
                    continue;
                }
                let id = (shard.first_id + i as u64) as u32;
                let name = e.path.name();
                if name.starts_with(needle) {
                    prefix.push((name, id));
                } else if name.contains(needle) {
                    inside.push((name, id));
                }
            }
        }
        prefix.sort_unstable();
        inside.sort_unstable();
        Step::Done(prefix.into_iter().chain(inside).map(|(_, id)| id).collect())
    }

    /// The reference graph of `roots`' closure: every entry reached, with its sizes.
    pub fn closure_graph(&self, roots: &[u32]) -> Step<Graph> {
        let mut seen: BTreeSet<u32> = roots.iter().copied().collect();
        let mut work: Vec<u32> = roots.to_vec();
        let mut need = BTreeSet::new();
        let mut graph = Graph::new();
        while let Some(id) = work.pop() {
            let entry = match self.entry(id) {
                Ok(e) => e,
                Err(n) => {
                    need.insert(n);
                    continue;
                }
            };
            let Some(nar_size) = entry.nar_size else {
                continue;
            };
            match self.paths_of(&entry.references) {
                Step::Done(refs) => {
                    graph.insert_weighted(
                        entry.path.clone(),
                        refs.into_iter().cloned(),
                        crate::cache::graph::Weight {
                            nar_size,
                            file_size: entry.file_size.unwrap_or(0),
                        },
                    );
                }
                Step::Need(n) => need.extend(n),
            }
            for &r in &entry.references {
                if seen.insert(r) {
                    work.push(r);
                }
            }
        }
        if need.is_empty() {
            Step::Done(graph)
        } else {
            Step::Need(need)
        }
    }
}
