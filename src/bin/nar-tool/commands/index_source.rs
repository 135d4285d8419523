//! Opening a cache's lookup index for `lookup` and `why-depends`: the index in the cache, or,
//! where it has none, one made in memory from its narinfos (slower: every narinfo is read).

use anyhow::{Context, Result};

use nar_tool::cache::index::publish::{content_of, StorageSource};
use nar_tool::cache::index::reader::{Encoded, IndexReader, IndexSource, Step};
use nar_tool::cache::index::IndexError;
use nar_tool::cache::storage::StorageRead;
use nar_tool::host::codec::decompress_zstd;
use nar_tool::store_path::StoreDir;

/// How many times a question is asked again when the index is replaced while it is read.
const TRIES: usize = 3;

/// A cache's index, read from the cache or made from its narinfos.
pub struct CacheIndex {
    storage: Box<dyn StorageRead>,
    reader: IndexReader,
    /// The index made in memory, for a cache without one.
    made: Option<Encoded>,
    jobs: usize,
    store_dir: StoreDir,
}

impl CacheIndex {
    /// Opens the index of `storage`; without one (or an unreadable one), reads every narinfo.
    pub fn open(storage: Box<dyn StorageRead>, store_dir: &StoreDir, jobs: usize) -> Result<Self> {
        let (reader, made) = load(&*storage, store_dir, jobs)?;
        Ok(CacheIndex {
            storage,
            reader,
            made,
            jobs,
            store_dir: store_dir.clone(),
        })
    }

    fn reopen(&mut self) -> Result<()> {
        (self.reader, self.made) = load(&*self.storage, &self.store_dir, self.jobs)?;
        Ok(())
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    /// The store directory the index's paths are in.
    pub fn store_dir(&self) -> &StoreDir {
        self.reader.store_dir()
    }

    /// Answers `question`, loading what it needs; opens the index again if it was replaced
    /// while being read.
    pub fn answer<T>(&mut self, question: impl Fn(&IndexReader) -> Step<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            let source: &dyn IndexSource = match &self.made {
                Some(made) => made,
                None => &StorageSource(&*self.storage),
            };
            match self.reader.answer(source, &question) {
                Ok(answer) => return Ok(answer),
                Err(IndexError::Shard { .. }) if tries + 1 < TRIES && self.made.is_none() => {
                    tries += 1;
                    self.reopen()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The index of `storage` and, where it has none (or an unreadable one), the index made in
/// memory from its narinfos that the reader reads.
fn load(
    storage: &dyn StorageRead,
    store_dir: &StoreDir,
    jobs: usize,
) -> Result<(IndexReader, Option<Encoded>)> {
    match IndexReader::open(&StorageSource(storage)) {
        Ok(Some(reader)) => return Ok((reader.with_decompressor(decompress_zstd), None)),
        Ok(None) => eprintln!(
            "nar-tool: note: {} has no index: reading every narinfo (`nar-tool index` writes one)",
            storage.describe()
        ),
        Err(e) => eprintln!(
            "nar-tool: warning: {}: {e}; reading every narinfo instead (`nar-tool index` writes it anew)",
            storage.describe()
        ),
    }
    let inventory = nar_tool::cache::gc::run::inventory(storage, jobs)
        .with_context(|| format!("reading the narinfos of {}", storage.describe()))?;
    for (hash, why) in &inventory.unreadable {
        eprintln!("nar-tool: warning: {hash}.narinfo: {why}");
    }
    let made = Encoded::new(&content_of(store_dir, &inventory));
    Ok((made.reader().with_decompressor(decompress_zstd), Some(made)))
}
