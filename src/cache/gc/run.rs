//! A collection run over any storage: read what the cache holds, plan, then delete batch by
//! batch under the [`lease`](crate::cache::storage::lease#the-protocol) protocol; and the other side of that
//! protocol, a lease on store paths' closures ([`lease_closure`]).
//!
//! # Why a lease taken during a collection never loses its paths
//!
//! The collection holds the GC lock for its whole run. Each deletion batch holds the batch lock
//! exclusively while it (1) reads every live lease, (2) spares the closure of what they name
//! (reading the narinfos of leased paths published after the collection listed the cache) and
//! the NAR files they pin, (3) deletes the batch. A holder writes its lease under the batch
//! lock shared, then checks that its paths are present. So for a lease written while the
//! collection runs, either the lease landed before a batch (that batch and every later one read
//! it and spare its closure) or after it (its deletions are done, and the holder's check finds
//! a deleted path missing and fails rather than claim it).
//!
//! A writer's lease ends when it is done, and what it published must then outlive it: so each
//! batch, after reading the leases, lists the cache again and takes every narinfo that appeared
//! since the collection listed it (or appeared again after this collection deleted it) as a
//! root. A lease not read by a batch ended before the batch read the leases, so what its holder
//! published is in the listing that follows. The same listing protects narinfos of writers that
//! take no lease (`nix copy`) once they are visible.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cache::graph::Graph;
use crate::cache::index::publish::{self, Published};
use crate::cache::layout::{resolve_url, CacheKey, KeyDir};
use crate::cache::storage::lease::{self, Lease};
use crate::cache::storage::{list_keys, StorageLock, StorageRead, StorageWrite};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use crate::store_path::{StoreDir, StorePath};

use super::plan::{self, Entry, Inventory, Plan, Policy, Summary};
use super::roots::Root;

/// Batches a deletion phase (narinfos, listings, NARs) is cut into at most, so that listing the
/// cache again for each batch stays a small multiple of listing it once.
pub const MAX_BATCHES: usize = 32;

/// How to run a collection.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// Roots given (`--root`, roots folders, the cache's `gcroots/`): leases and recent
    /// narinfos are added by the run.
    pub roots: Vec<Root>,
    /// Plan only: take no lock, change nothing.
    pub dry_run: bool,
    /// Narinfos read at once.
    pub jobs: usize,
    /// Deletions per batch at least (each batch re-reads the leases and lists the cache again;
    /// a phase larger than [`MAX_BATCHES`] batches of this has larger batches instead).
    pub batch: usize,
    /// Writes the cache's lookup index anew afterwards (`crate::cache::index`), in this store
    /// directory; `None`: leaves it as it is.
    pub index: Option<StoreDir>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            policy: Policy::default(),
            roots: Vec::new(),
            dry_run: false,
            jobs: 8,
            batch: 1000,
            index: Some(StoreDir::default()),
        }
    }
}

/// What a run planned and did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub plan: Plan,
    /// What was deleted (as planned, for a dry run).
    pub summary: Summary,
    /// The store paths whose narinfos were deleted, in order.
    pub deleted: Vec<StorePath>,
    /// Paths the plan had doomed that a lease taken meanwhile (or a narinfo published
    /// meanwhile) spared.
    pub spared: u64,
    pub graph: Graph,
    /// The lookup index written afterwards (`None`: not asked for, or a dry run; `Err`: why it
    /// could not be, the collection itself done).
    pub index: Option<Result<Published, String>>,
}

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// Reads one narinfo: its entry, or why it cannot be used.
pub fn read_entry<S: StorageRead + ?Sized>(
    storage: &S,
    hash: &str,
) -> io::Result<Option<Result<Entry, String>>> {
    let key =
        CacheKey::narinfo(hash).map_err(|e| err(io::ErrorKind::InvalidInput, e.to_string()))?;
    let Some(mut object) = storage.open(&key)? else {
        return Ok(None);
    };
    if object.meta.size > MAX_NARINFO_SIZE as u64 {
        return Ok(Some(Err(format!("larger than {MAX_NARINFO_SIZE} bytes"))));
    }
    let mut bytes = Vec::new();
    (&mut object.body)
        .take(MAX_NARINFO_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(Some(Err("not UTF-8".into())));
    };
    let info = match NarInfo::parse(&text) {
        Ok(info) => info,
        Err(e) => return Ok(Some(Err(e.to_string()))),
    };
    if info.store_path.hash_part() != hash {
        return Ok(Some(Err(format!(
            "it describes {}, whose hash part is not the narinfo's name",
            info.store_path
        ))));
    }
    Ok(Some(Ok(Entry {
        nar: resolve_url(&info.url).ok(),
        path: info.store_path,
        references: info.references,
        nar_size: info.nar_size,
        file_size: info.file_size,
        modified: object.meta.modified,
    })))
}

/// Reads the narinfos of `hashes`, `jobs` at a time.
fn read_entries<S: StorageRead + ?Sized>(
    storage: &S,
    hashes: &[String],
    jobs: usize,
    inventory: &mut Inventory,
) -> io::Result<()> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(hashes.len()));
    let work = || -> io::Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(hash) = hashes.get(i) else {
                return Ok(());
            };
            let read = read_entry(storage, hash)?;
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((hash.clone(), read));
        }
    };
    if jobs <= 1 || hashes.len() < 64 {
        work()?;
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..jobs).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a reader panicked")))
                })
                .collect::<io::Result<Vec<()>>>()
        })?;
    }
    for (hash, read) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match read {
            None => {} // deleted since it was listed
            Some(Ok(entry)) => {
                inventory.entries.insert(hash, entry);
            }
            Some(Err(why)) => inventory.unreadable.push((hash, why)),
        }
    }
    inventory.unreadable.sort();
    Ok(())
}

/// Lists and reads what the cache holds.
pub fn inventory<S: StorageRead + ?Sized>(storage: &S, jobs: usize) -> io::Result<Inventory> {
    let mut inv = narinfos_except(storage, &HashSet::new(), jobs)?;
    let (nar_keys, _) = list_keys(storage, KeyDir::Nar)?;
    inv.nars = nar_keys.into_iter().collect();
    Ok(inv)
}

/// Lists the cache's root and reads its narinfos, but those whose hash part is in `known` (the
/// caller has their content): entries, listings and unreadable narinfos; `nar/` is not listed.
pub fn narinfos_except<S: StorageRead + ?Sized>(
    storage: &S,
    known: &HashSet<String>,
    jobs: usize,
) -> io::Result<Inventory> {
    let mut inv = Inventory::default();
    let (root_keys, _) = list_keys(storage, KeyDir::Root)?;
    let mut hashes = Vec::new();
    for key in root_keys {
        match key {
            CacheKey::NarInfo(h) if !known.contains(&h) => hashes.push(h),
            CacheKey::Listing(h) => {
                inv.listings.insert(h);
            }
            _ => {}
        }
    }
    read_entries(storage, &hashes, jobs, &mut inv)?;
    Ok(inv)
}

/// The live leases' names.
fn read_leases(storage: &dyn StorageWrite, tidy: bool) -> io::Result<lease::LeaseNames> {
    let mut all = lease::LeaseNames::default();
    for text in storage.live_leases(tidy)? {
        let names = lease::parse(&text);
        all.paths.extend(names.paths);
        all.nars.extend(names.nars);
        all.ignored += names.ignored;
    }
    all.paths.sort();
    all.paths.dedup();
    all.nars.sort();
    all.nars.dedup();
    Ok(all)
}

/// The collection's state while it deletes: what is still to go, and what was spared.
struct Pending<'a> {
    storage: &'a dyn StorageWrite,
    inventory: Inventory,
    graph: Graph,
    narinfos: VecDeque<plan::Doomed>,
    listings: VecDeque<String>,
    nars: VecDeque<(CacheKey, u64)>,
    /// Paths spared while their narinfo was there (its NAR pinned, its references followed):
    /// nothing more to do for them. A path spared while it had no narinfo (leased before it
    /// was published) is looked at again each time it is named, until its narinfo is seen.
    done: HashSet<StorePath>,
    pinned: BTreeSet<CacheKey>,
    spared: HashSet<String>,
    spared_paths: u64,
}

impl Pending<'_> {
    /// Spares the closures of `roots` (reading the narinfos the inventory lacks) and `nars`.
    fn spare(&mut self, roots: Vec<StorePath>, nars: Vec<CacheKey>) -> io::Result<()> {
        let mut todo: Vec<StorePath> = roots
            .into_iter()
            .filter(|p| !self.done.contains(p))
            .collect();
        self.pinned.extend(nars);
        let mut hashes: HashSet<String> = HashSet::new();
        let mut reached: Vec<StorePath> = Vec::new();
        while let Some(path) = todo.pop() {
            if self.done.contains(&path) || !hashes.insert(path.hash_part().to_string()) {
                continue;
            }
            if !self.inventory.entries.contains_key(path.hash_part()) {
                // Published after the listing, or again after this collection deleted it
                // (perhaps naming another NAR): read it now.
                if let Some(Ok(entry)) = read_entry(self.storage, path.hash_part())? {
                    if entry.path == path {
                        self.graph
                            .insert(path.clone(), entry.references.iter().cloned());
                        self.inventory
                            .entries
                            .insert(path.hash_part().to_string(), entry);
                    }
                }
            }
            if let Some(refs) = self.graph.references(&path) {
                todo.extend(refs.into_iter().cloned());
            }
            reached.push(path);
        }
        let mut newly: HashSet<String> = HashSet::new();
        for path in &reached {
            let hash = path.hash_part();
            if let Some(entry) = self.inventory.entries.get(hash) {
                if let Some(nar) = &entry.nar {
                    self.pinned.insert(nar.clone());
                }
                self.done.insert(path.clone());
            }
            if self.spared.insert(hash.to_string()) {
                newly.insert(hash.to_string());
            }
        }
        let before = self.narinfos.len();
        self.narinfos.retain(|d| !newly.contains(&d.hash_part));
        self.spared_paths += (before - self.narinfos.len()) as u64;
        let (spared, pinned) = (&self.spared, &self.pinned);
        self.listings.retain(|h| !spared.contains(h));
        self.nars.retain(|(k, _)| !pinned.contains(k));
        Ok(())
    }

    /// Re-reads the leases (the batch lock held) and spares what is new.
    fn recheck(&mut self) -> io::Result<()> {
        let names = read_leases(self.storage, true)?;
        let new: Vec<StorePath> = names
            .paths
            .into_iter()
            .filter(|p| !self.done.contains(p))
            .collect();
        let nars: Vec<CacheKey> = names
            .nars
            .into_iter()
            .filter(|k| !self.pinned.contains(k))
            .collect();
        if !new.is_empty() || !nars.is_empty() {
            self.spare(new, nars)?;
        }
        Ok(())
    }

    /// Narinfos published since the listing are roots: their NARs stay.
    fn spare_new_narinfos(&mut self) -> io::Result<()> {
        let (keys, _) = list_keys(self.storage, KeyDir::Root)?;
        let mut fresh = Vec::new();
        for key in keys {
            if let CacheKey::NarInfo(h) = key {
                if !self.inventory.entries.contains_key(&h) {
                    if let Some(Ok(entry)) = read_entry(self.storage, &h)? {
                        fresh.push(entry.path.clone());
                        self.graph
                            .insert(entry.path.clone(), entry.references.iter().cloned());
                        self.inventory.entries.insert(h, entry);
                    }
                }
            }
        }
        self.spare(fresh, Vec::new())
    }

    /// Starts a deletion batch: takes the batch lock exclusively, then spares what the live
    /// leases name and the closures of narinfos published since the cache was listed — in that
    /// order. A writer's lease ends only after it published: a lease not read here ended
    /// before this reading began, so what it published is in the listing that follows.
    fn begin_batch(&mut self) -> io::Result<StorageLock> {
        let lock = self.storage.gc_batch_lock(true)?;
        self.recheck()?;
        self.spare_new_narinfos()?;
        Ok(lock)
    }
}

/// Deletes `keys` (with their sizes), `jobs` at a time: how many were there, and their bytes.
fn delete_all(
    storage: &dyn StorageWrite,
    keys: &[(CacheKey, u64)],
    jobs: usize,
) -> io::Result<(u64, u64)> {
    let next = AtomicUsize::new(0);
    let work = || -> io::Result<(u64, u64)> {
        let (mut count, mut bytes) = (0, 0);
        while let Some((key, size)) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
            if storage.delete(key)? {
                count += 1;
                bytes += size;
            }
        }
        Ok((count, bytes))
    };
    if jobs <= 1 || keys.len() < 64 {
        return work();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs).map(|_| s.spawn(work)).collect();
        let mut total = (0, 0);
        for h in handles {
            let (count, bytes) = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a deleter panicked")))?;
            total = (total.0 + count, total.1 + bytes);
        }
        Ok(total)
    })
}

/// Runs a collection.
pub fn collect(storage: &dyn StorageWrite, opts: &Options) -> io::Result<Outcome> {
    let _gc = if opts.dry_run {
        None
    } else {
        let lock = storage.gc_lock()?.ok_or_else(|| {
            err(
                io::ErrorKind::WouldBlock,
                format!("another collection of {} is running", storage.describe()),
            )
        })?;
        storage.clean_abandoned()?;
        Some(lock)
    };
    // The index as it was before the listing: what writers add to it after, the new one keeps.
    let index_base = match (&opts.index, opts.dry_run) {
        (Some(_), false) => publish::read_current(storage).ok().flatten(),
        _ => None,
    };
    let inventory = inventory(storage, opts.jobs)?;
    let graph = plan::graph(&inventory);
    let mut roots = opts.roots.clone();
    roots.extend(plan::recent_roots(&inventory, &opts.policy));
    let leases = {
        let _batch = if opts.dry_run {
            None
        } else {
            Some(storage.gc_batch_lock(true)?)
        };
        read_leases(storage, !opts.dry_run)?
    };
    roots.extend(leases.paths.iter().map(|p| Root {
        path: p.clone(),
        source: "a lease".into(),
    }));
    let pinned: BTreeSet<CacheKey> = leases.nars.iter().cloned().collect();
    let planned = plan::plan(&inventory, &graph, roots, &pinned, &opts.policy, |k| {
        storage.stat(k)
    })?;
    if opts.dry_run {
        return Ok(Outcome {
            summary: planned.summary.clone(),
            deleted: planned.narinfos.iter().map(|d| d.path.clone()).collect(),
            plan: planned,
            graph,
            spared: 0,
            index: None,
        });
    }
    let mut pending = Pending {
        storage,
        graph,
        narinfos: planned.narinfos.iter().cloned().collect(),
        listings: planned.listings.iter().cloned().collect(),
        nars: planned.nars.iter().cloned().collect(),
        done: HashSet::new(),
        pinned,
        spared: HashSet::new(),
        spared_paths: 0,
        inventory,
    };
    let mut summary = planned.summary.clone();
    let mut deleted = Vec::new();
    let (mut listings_freed, mut nars_freed, mut bytes_freed) = (0, 0, 0);
    let per_batch = |n: usize| opts.batch.max(n.div_ceil(MAX_BATCHES)).max(1);
    // Narinfos, referrers first.
    let batch = per_batch(pending.narinfos.len());
    while !pending.narinfos.is_empty() {
        let _batch = pending.begin_batch()?;
        for _ in 0..batch {
            let Some(doomed) = pending.narinfos.pop_front() else {
                break;
            };
            let key = CacheKey::narinfo(&doomed.hash_part)
                .map_err(|e| err(io::ErrorKind::InvalidInput, e.to_string()))?;
            if storage.delete(&key)? {
                deleted.push(doomed.path);
            }
            // Forgotten: if a writer publishes it again, the next batch finds it new.
            pending.inventory.entries.remove(&doomed.hash_part);
        }
    }
    // Listings, then NAR files: in any order, so `jobs` deletions at once.
    let batch = per_batch(pending.listings.len());
    while !pending.listings.is_empty() {
        let _batch = pending.begin_batch()?;
        let n = batch.min(pending.listings.len());
        let keys = pending
            .listings
            .drain(..n)
            .map(|hash| {
                CacheKey::parse(&format!("{hash}.ls"))
                    .map_err(|e| err(io::ErrorKind::InvalidInput, e.to_string()))
                    .map(|k| (k, 0))
            })
            .collect::<io::Result<Vec<_>>>()?;
        listings_freed += delete_all(storage, &keys, opts.jobs)?.0;
    }
    let batch = per_batch(pending.nars.len());
    while !pending.nars.is_empty() {
        let _batch = pending.begin_batch()?;
        let n = batch.min(pending.nars.len());
        let keys: Vec<(CacheKey, u64)> = pending.nars.drain(..n).collect();
        let (count, bytes) = delete_all(storage, &keys, opts.jobs)?;
        nars_freed += count;
        bytes_freed += bytes;
    }
    summary.paths_kept += summary.paths_freed - deleted.len() as u64;
    summary.paths_freed = deleted.len() as u64;
    summary.listings_freed = listings_freed;
    summary.bytes_kept += summary.bytes_freed - bytes_freed;
    summary.nars_freed = nars_freed;
    summary.bytes_freed = bytes_freed;
    let index = opts.index.as_ref().map(|store_dir| {
        let listed = publish::content_of(store_dir, &pending.inventory);
        let removed: BTreeSet<StorePath> = deleted.iter().cloned().collect();
        publish::reconcile(
            storage,
            &listed,
            index_base.as_ref().map(|b| &b.content),
            &removed,
        )
        .map_err(|e| e.to_string())
    });
    Ok(Outcome {
        plan: planned,
        summary,
        deleted,
        spared: pending.spared_paths,
        graph: pending.graph,
        index,
    })
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{path} is not in the cache {cache} (no narinfo {key})")]
    NotInCache {
        path: String,
        cache: String,
        key: String,
    },
    #[error("{path} is in the cache {cache}, but its narinfo cannot be read: {why}")]
    Unreadable {
        path: String,
        cache: String,
        why: String,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Leases the closures of `paths` in `storage`: the lease is written, then every path of the
/// closures is checked to be present (narinfo and NAR), so a collection that deleted one just
/// before fails this rather than leave a lease on a path that is gone. The closure, sorted.
pub fn lease_closure(
    storage: &dyn StorageWrite,
    paths: &[StorePath],
    show: impl Fn(&StorePath) -> String,
) -> Result<(Box<dyn Lease>, Vec<StorePath>), LeaseError> {
    let mut lease = storage.lease()?;
    let mut closure: Vec<(StorePath, Option<CacheKey>)> = Vec::new();
    let mut seen: HashSet<StorePath> = HashSet::new();
    let mut todo: Vec<StorePath> = paths.to_vec();
    // Names leased before they are looked at: a collection running now spares them from its
    // next batch on, and what this finds present stays.
    lease.extend(
        &paths
            .iter()
            .map(|p| p.base_name().to_string())
            .collect::<Vec<_>>(),
    )?;
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let entry = read_present(storage, &path, &show)?;
        let new: Vec<StorePath> = entry
            .references
            .iter()
            .filter(|r| !seen.contains(*r))
            .cloned()
            .collect();
        let mut names: Vec<String> = new.iter().map(|p| p.base_name().to_string()).collect();
        names.extend(entry.nar.iter().map(|k| k.to_string()));
        if !names.is_empty() {
            lease.extend(&names)?;
        }
        // Present after its NAR was leased, so it stays.
        if let Some(nar) = &entry.nar {
            if storage.stat(nar)?.is_none() {
                return Err(LeaseError::NotInCache {
                    path: show(&path),
                    cache: storage.describe(),
                    key: nar.to_string(),
                });
            }
        }
        todo.extend(new);
        closure.push((path, entry.nar));
    }
    let mut closure: Vec<StorePath> = closure.into_iter().map(|(p, _)| p).collect();
    closure.sort();
    Ok((lease, closure))
}

fn read_present(
    storage: &dyn StorageWrite,
    path: &StorePath,
    show: &impl Fn(&StorePath) -> String,
) -> Result<Entry, LeaseError> {
    let key = || format!("{}.narinfo", path.hash_part());
    match read_entry(storage, path.hash_part())? {
        None => Err(LeaseError::NotInCache {
            path: show(path),
            cache: storage.describe(),
            key: key(),
        }),
        Some(Err(why)) => Err(LeaseError::Unreadable {
            path: show(path),
            cache: storage.describe(),
            why,
        }),
        Some(Ok(entry)) if entry.path != *path => Err(LeaseError::NotInCache {
            path: show(path),
            cache: storage.describe(),
            key: format!("{} (it describes {})", key(), entry.path),
        }),
        Some(Ok(entry)) => Ok(entry),
    }
}
