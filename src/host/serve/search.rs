//! Searching a cache's lookup index (`nar-tool-index/`, `docs/INDEX.md`):
//! `GET /_nar-tool/lookup?q=QUERY[&referrers=1][&limit=N][&offset=O]` answers one page,
//! `{"total": N, "offset": O, "items": [record…], "next": O' | null}`, each record as
//! `nar-tool lookup --json` prints it (`PathRecord`). `q` is a hash part, a store path or base
//! name, or a name (matched by prefix, then anywhere, as `nar-tool lookup` does).
//!
//! A hash part or store path reads the manifest and a few shards. A name, or `referrers=1`,
//! needs every shard: the decoded index of each cache is kept in memory ([`Searches`]: the
//! core's columnar `IndexTable`, every entry's referrers built) and loaded again only when the
//! manifest changes (its ETag, then its bytes, compared), at most one load at a time per cache
//! (others wait up to [`LOAD_WAIT`], then get a 503 with Retry-After), on the blocking thread
//! the request is answered on. Bounded: `q` at most
//! [`MAX_QUERY`] bytes, `limit` at most [`MAX_LIMIT`], at most [`MAX_REFERRERS`] referrers a
//! record (`referrersTotal` says how many there are), and a page at most `json.rs`'s byte
//! budget. Errors are JSON too: `{"error": "…"}` (400 for a bad query, 404 when the cache has
//! no index).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::*;
use crate::cache::index::publish::{self as index_publish, StorageSource};
use crate::cache::index::reader::{IndexReader, IndexSource, PathRecord, Step};
use crate::cache::index::table::IndexTable;
use crate::cache::index::{format as index_format, IndexError, Query};
use crate::host::codec::decompress_zstd;
use crate::store_path::StoreDir;

/// The most records a page holds.
pub(super) const MAX_LIMIT: usize = 1000;
/// Records a page holds when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The longest query (bytes, decoded).
pub(super) const MAX_QUERY: usize = 1024;
/// The most referrers a record lists.
pub(super) const MAX_REFERRERS: usize = 10_000;
/// How long a request waits for another one's load of the index before a 503.
const LOAD_WAIT: Duration = Duration::from_secs(2);
/// Shards read at once while loading an index (a bucket answers each after a round trip).
const FETCHERS: usize = 8;
/// How many times a search starts again when the index is replaced under it.
const TRIES: usize = 3;

/// The indexes of one cache loaded so far.
#[derive(Default)]
pub(super) struct Searches {
    state: Mutex<State>,
    /// Signalled when a load ends.
    loaded: Condvar,
}

#[derive(Default)]
struct State {
    /// The index with every shard, as of its manifest.
    whole: Option<Arc<Whole>>,
    /// A load is in progress.
    loading: bool,
    /// The manifest ETag whose index could not be loaded, and why (not tried again).
    failed: Option<(String, String)>,
}

struct Whole {
    etag: String,
    manifest: Arc<Vec<u8>>,
    /// Every entry, in columns (about 100 bytes an entry), referrers built.
    table: Arc<IndexTable>,
}

/// What a search asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Params {
    q: String,
    referrers: bool,
    limit: usize,
    offset: usize,
}

/// Why a search has no answer.
#[derive(Debug)]
enum Failure {
    /// The request's fault (400).
    Bad(String),
    /// The cache has no index (404).
    NoIndex,
    /// Another request is loading the index (503).
    Busy,
    /// The index was replaced while it was read.
    Replaced(String),
    /// The index or the cache could not be read (500).
    Broken(String),
}

impl From<IndexError> for Failure {
    fn from(e: IndexError) -> Failure {
        match e {
            IndexError::Shard { .. } => Failure::Replaced(e.to_string()),
            e => Failure::Broken(e.to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Broken(e.to_string())
    }
}

impl Shelf {
    /// The reply to `GET …/_nar-tool/lookup?<query>`.
    pub(super) fn lookup(&self, query: &str) -> Reply {
        let result = parse_params(query)
            .map_err(Failure::Bad)
            .and_then(|params| self.search(&params));
        match result {
            Ok(body) => json_reply(200, body),
            Err(Failure::Bad(why)) => json_error(400, &format!("bad query: {why}")),
            Err(Failure::NoIndex) => json_error(
                404,
                "this cache has no lookup index (`nar-tool index CACHE` writes one)",
            ),
            Err(Failure::Busy) => json_error(
                503,
                "the index of this cache is being loaded by another request: try again shortly",
            )
            .header("Retry-After", "2"),
            Err(Failure::Replaced(why) | Failure::Broken(why)) => {
                json_error(500, &format!("cannot read the index of this cache: {why}"))
            }
        }
    }

    /// A page of records, as JSON.
    fn search(&self, params: &Params) -> Result<Vec<u8>, Failure> {
        let mut tries = 0;
        loop {
            match self.search_once(params) {
                Err(Failure::Replaced(_)) if tries + 1 < TRIES => tries += 1,
                other => return other,
            }
        }
    }

    fn search_once(&self, params: &Params) -> Result<Vec<u8>, Failure> {
        let key = index_publish::key(index_publish::MANIFEST)?;
        let meta = self.cache.stat(&key)?.ok_or(Failure::NoIndex)?;
        if let Some(whole) = self.searches.current(&meta.etag) {
            return page(Asker::Whole(&whole.table), params);
        }
        let Some((manifest, _)) = read_manifest(&*self.cache)? else {
            return Err(Failure::NoIndex);
        };
        let mut reader = IndexReader::new(&manifest)?.with_decompressor(decompress_zstd);
        let by_hash = matches!(
            Query::parse(reader.store_dir(), &params.q),
            Query::HashPart(_)
        );
        if by_hash && !params.referrers {
            // A few shards: read for this request alone.
            let source = StorageSource(&*self.cache);
            return page(Asker::Partial(&mut reader, &source), params);
        }
        let whole = self.searches.whole(&*self.cache)?;
        page(Asker::Whole(&whole.table), params)
    }
}

impl Searches {
    /// The loaded index, if its manifest still has `etag`.
    fn current(&self, etag: &str) -> Option<Arc<Whole>> {
        let state = self.lock();
        state.whole.as_ref().filter(|w| w.etag == etag).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of `cache` with every shard: the one loaded, if its manifest is still the
    /// cache's, else loaded now (or by another request, waited for).
    fn whole(&self, cache: &dyn StorageRead) -> Result<Arc<Whole>, Failure> {
        let deadline = Instant::now() + LOAD_WAIT;
        let key = index_publish::key(index_publish::MANIFEST)?;
        loop {
            let meta = cache.stat(&key)?.ok_or(Failure::NoIndex)?;
            let mut state = self.lock();
            if let Some(whole) = state.whole.as_ref().filter(|w| w.etag == meta.etag) {
                return Ok(whole.clone());
            }
            if let Some((_, why)) = state.failed.as_ref().filter(|(e, _)| *e == meta.etag) {
                return Err(Failure::Broken(why.clone()));
            }
            if state.loading {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Failure::Busy);
                }
                let (held, _) = self
                    .loaded
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner());
                drop(held);
                continue;
            }
            state.loading = true;
            let previous = state.whole.take();
            drop(state);
            let _loading = Loading(self);
            return self.load(cache, previous);
        }
    }

    /// Loads the cache's index (this request holds the load), unless its manifest has the
    /// bytes of the one loaded before.
    fn load(
        &self,
        cache: &dyn StorageRead,
        previous: Option<Arc<Whole>>,
    ) -> Result<Arc<Whole>, Failure> {
        let (manifest, etag) = read_manifest(cache)?.ok_or(Failure::NoIndex)?;
        let whole = match previous {
            Some(p) if *p.manifest == manifest => Whole {
                etag,
                manifest: p.manifest.clone(),
                table: p.table.clone(),
            },
            previous => {
                // The previous index is let go before the next one is made: one in memory.
                drop(previous);
                match load_every_shard(cache, &manifest) {
                    Ok(table) => Whole {
                        etag,
                        manifest: Arc::new(manifest),
                        table: Arc::new(table),
                    },
                    Err(e) => {
                        // Not tried again while the manifest stays the same: a shard missing
                        // or damaged under an unchanged manifest stays so (a failed read may
                        // not: it is tried again).
                        if !matches!(e, IndexError::Read(_)) {
                            self.lock().failed = Some((etag, e.to_string()));
                        }
                        return Err(Failure::from(e));
                    }
                }
            }
        };
        let whole = Arc::new(whole);
        let mut state = self.lock();
        state.whole = Some(whole.clone());
        state.failed = None;
        Ok(whole)
    }
}

/// Marks the end of a load, however it ends.
struct Loading<'a>(&'a Searches);

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.0.lock().loading = false;
        self.0.loaded.notify_all();
    }
}

/// The manifest's bytes and ETag; `None` if there is none.
fn read_manifest(cache: &dyn StorageRead) -> Result<Option<(Vec<u8>, String)>, Failure> {
    let key = index_publish::key(index_publish::MANIFEST)?;
    let Some(object) = cache.open(&key)? else {
        return Ok(None);
    };
    let limit = index_format::MAX_MANIFEST_BYTES;
    if object.meta.size > limit {
        return Err(Failure::Broken(format!(
            "its manifest has {} bytes, more than the {limit} allowed",
            object.meta.size
        )));
    }
    let mut bytes = Vec::with_capacity(object.meta.size as usize);
    object.body.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(Some((bytes, object.meta.etag)))
}

/// The table of the index whose manifest this is, with every shard (read [`FETCHERS`] at once)
/// and every entry's referrers.
fn load_every_shard(cache: &dyn StorageRead, manifest: &[u8]) -> Result<IndexTable, IndexError> {
    let mut table = IndexTable::new(manifest)?.with_decompressor(decompress_zstd);
    let names: Vec<String> = table
        .manifest()
        .shards
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let source = StorageSource(cache);
    let read = |name: &String| -> Result<Vec<u8>, IndexError> {
        source
            .read(name, index_format::MAX_SHARD_BYTES)?
            .ok_or_else(|| IndexError::Shard {
                name: name.clone(),
                why: "it is missing (a newer index replaced it?)".into(),
            })
    };
    // A batch at a time: the compressed shards in memory at once stay few.
    for (b, batch) in names.chunks(FETCHERS * 4).enumerate() {
        let fetched: Vec<Result<Vec<u8>, IndexError>> = std::thread::scope(|s| {
            let workers: Vec<_> = batch
                .chunks(batch.len().div_ceil(FETCHERS))
                .map(|part| s.spawn(move || part.iter().map(read).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join().unwrap_or_else(|_| {
                        vec![Err(IndexError::Read("a shard reader failed".into()))]
                    })
                })
                .collect()
        });
        for (i, bytes) in fetched.into_iter().enumerate() {
            table.add_shard(b * FETCHERS * 4 + i, &bytes?)?;
        }
    }
    table
        .build_referrers()
        .map_err(|missing| IndexError::Read(format!("shards {missing:?} were not read")))?;
    Ok(table)
}

/// One record of a page: a path as `nar-tool lookup --json` prints it, and how many referrers
/// it has when they are asked for.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(flatten)]
    record: PathRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrers_total: Option<usize>,
}

/// Who answers the questions of a search: the table of every entry, or a reader that reads
/// the shards it needs from a source.
enum Asker<'a> {
    Whole(&'a IndexTable),
    Partial(&'a mut IndexReader, &'a dyn IndexSource),
}

impl Asker<'_> {
    fn store_dir(&self) -> StoreDir {
        match self {
            Asker::Whole(t) => t.store_dir().clone(),
            Asker::Partial(r, _) => r.store_dir().clone(),
        }
    }

    /// The id of the entry of `hash` if the cache has its narinfo.
    fn find_present(&mut self, hash: &str) -> Result<Option<u32>, Failure> {
        match self {
            Asker::Whole(t) => Ok(t
                .find(hash)
                .map_err(|_| lacks_shard())?
                .filter(|row| row.present())
                .map(|row| row.id)),
            Asker::Partial(reader, source) => {
                Ok(reader.answer(*source, |r| match r.find(hash) {
                    Step::Done(Some(id)) => match r.entry(id) {
                        // A reference without a narinfo is not in the cache.
                        Ok(e) => Step::Done(e.nar_size.is_some().then_some(id)),
                        Err(n) => Step::Need([n].into()),
                    },
                    Step::Done(None) => Step::Done(None),
                    Step::Need(n) => Step::Need(n),
                })?)
            }
        }
    }

    fn search_name(&mut self, name: &str) -> Result<Vec<u32>, Failure> {
        match self {
            Asker::Whole(t) => Ok(t.search_name(name)),
            Asker::Partial(reader, source) => Ok(reader.answer(*source, |r| r.search_name(name))?),
        }
    }

    /// Entry `id` as a record, with at most [`MAX_REFERRERS`] referrers if asked, and how many
    /// there are.
    fn record(&mut self, id: u32, referrers: bool) -> Result<Item, Failure> {
        let (record, referrers_total) = match self {
            Asker::Whole(t) => {
                let record = t
                    .record_with_referrers(id, referrers.then_some(MAX_REFERRERS))
                    .ok_or_else(lacks_shard)?;
                let total = t.built_referrers(id).map(<[u32]>::len);
                (record, total.filter(|_| referrers))
            }
            Asker::Partial(reader, source) => {
                let mut record = reader.answer(*source, |r| r.record(id, referrers))??;
                let total = record.referrers.as_mut().map(|r| {
                    let total = r.len();
                    r.truncate(MAX_REFERRERS);
                    total
                });
                (record, total)
            }
        };
        Ok(Item {
            record,
            referrers_total,
        })
    }
}

fn lacks_shard() -> Failure {
    Failure::Broken("the loaded index lacks a shard".into())
}

/// The page `params` asks for, as JSON.
fn page(mut asker: Asker<'_>, params: &Params) -> Result<Vec<u8>, Failure> {
    let ids: Vec<u32> = match Query::parse(&asker.store_dir(), &params.q) {
        Query::HashPart(hash) => asker.find_present(&hash)?.into_iter().collect(),
        Query::Name(name) => asker.search_name(&name)?,
    };
    let mut page = json::Page::new(ids.len(), params.offset);
    for &id in ids.iter().skip(params.offset).take(params.limit) {
        let item = asker.record(id, params.referrers)?;
        if !page.push(&item)? {
            break;
        }
    }
    Ok(page.finish())
}

/// Reads `q`, `referrers`, `limit` and `offset`; anything else, or any of them twice, is refused.
fn parse_params(query: &str) -> Result<Params, String> {
    let mut q: Option<String> = None;
    let (mut referrers, mut limit, mut offset) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode_component(key, value)?;
        let twice = || format!("{key} is given twice");
        let number = |max: usize| -> Result<usize, String> {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max && (key != "limit" || *n > 0))
                .ok_or_else(|| match key {
                    "limit" => format!("limit {value:?} is not a number from 1 to {MAX_LIMIT}"),
                    _ => format!("{key} {value:?} is not a number up to {max}"),
                })
        };
        match key {
            "q" if q.is_some() => return Err(twice()),
            "q" => q = Some(value.clone()),
            "referrers" if referrers.is_some() => return Err(twice()),
            "referrers" => {
                referrers = Some(match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("referrers {value:?}: expected 1 or 0")),
                })
            }
            "limit" if limit.is_some() => return Err(twice()),
            "limit" => limit = Some(number(MAX_LIMIT)?),
            "offset" if offset.is_some() => return Err(twice()),
            "offset" => offset = Some(number(u32::MAX as usize)?),
            _ => {
                return Err(format!(
                    "unknown parameter {:?} (expected q, referrers, limit, offset)",
                    crate::escape::escape_controls(&key.chars().take(64).collect::<String>())
                ))
            }
        }
    }
    let q = q.ok_or("q (what to look for) is missing")?;
    if q.is_empty() {
        return Err("q is empty".into());
    }
    Ok(Params {
        q,
        referrers: referrers.unwrap_or(false),
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        offset: offset.unwrap_or(0),
    })
}

/// A percent-encoded query value (`+` is itself: store paths have no spaces), at most
/// [`MAX_QUERY`] bytes of UTF-8 without control characters.
fn decode_component(key: &str, value: &str) -> Result<String, String> {
    if value.len() > 3 * MAX_QUERY {
        return Err(format!("{key} has more than {MAX_QUERY} bytes"));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("{key}: a % at byte {i} is not followed by two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.len() > MAX_QUERY {
        return Err(format!(
            "{key} has {} bytes, more than {MAX_QUERY}",
            out.len()
        ));
    }
    let text = String::from_utf8(out).map_err(|_| format!("{key} is not UTF-8"))?;
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("{key} holds the control character {c:?}"));
    }
    Ok(text)
}

fn json_reply(status: u16, body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("Cache-Control", "no-cache".into()),
        ],
        body: Body::Bytes(body),
    }
}

fn json_error(status: u16, why: &str) -> Reply {
    let mut body =
        serde_json::to_vec(&serde_json::json!({ "error": why })).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    json_reply(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_strictly() {
        let p = parse_params("q=pkg%2D1&referrers=1&limit=5&offset=10").unwrap();
        assert_eq!(
            p,
            Params {
                q: "pkg-1".into(),
                referrers: true,
                limit: 5,
                offset: 10
            }
        );
        let p = parse_params("q=gtk+3").unwrap();
        assert_eq!(
            (p.q.as_str(), p.limit, p.offset),
            ("gtk+3", DEFAULT_LIMIT, 0)
        );
        for (query, says) in [
            ("", "missing"),
            ("q=", "empty"),
            ("q=a&q=b", "twice"),
            ("q=a&limit=0", "1 to 1000"),
            ("q=a&limit=1001", "1 to 1000"),
            ("q=a&limit=-1", "1 to 1000"),
            ("q=a&offset=99999999999999999999", "offset"),
            ("q=a&referrers=yes", "expected 1 or 0"),
            ("q=a&sort=name", "unknown parameter"),
            ("q=%zz", "two hex digits"),
            ("q=a%", "two hex digits"),
            ("q=%ff%fe", "not UTF-8"),
            ("q=a%00b", "control character"),
            ("q=a%0Ab", "control character"),
        ] {
            let err = parse_params(query).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
        let long = format!("q={}", "a".repeat(MAX_QUERY + 1));
        assert!(parse_params(&long).unwrap_err().contains("more than 1024"));
        assert!(parse_params(&format!("q={}", "a".repeat(MAX_QUERY))).is_ok());
        let encoded = format!("q={}", "%41".repeat(MAX_QUERY + 1));
        assert!(parse_params(&encoded)
            .unwrap_err()
            .contains("more than 1024 bytes"));
    }
}
