//! Publishing: the cache made ready, existing narinfos read, and ready paths published in
//! batches (one barrier, then the commits in dependency order).

use super::*;
use crate::cache::index::EntryInfo;
use crate::cache::storage::lease::Lease;

/// What a build starts with.
pub(super) struct Started {
    /// The build's lease, holding `leased` already.
    pub(super) lease: Box<dyn Lease>,
    pub(super) leased: Vec<StorePath>,
    /// What the cache held, when it was listed (a bucket, not `--force`).
    pub(super) present: Option<Present>,
}

/// Gets the cache ready for the build: the storage (folders, leftovers of writers that died),
/// `nix-cache-info` (checked against the store, or written), the listing of what is there
/// ([`Present`], at most `max_names`), and the lease, holding the given paths. On remote
/// storage these are a dozen requests, made in three strands at once (each waits on round
/// trips, none needs another's answer): the storage's preparation then the lease (which needs
/// the owner the preparation registers), `nix-cache-info`, the listing. Nothing a collection
/// could take is looked for before the lease holds it: the listing is only a hint (a key it
/// has is read again, after the lease).
pub(super) fn start(
    storage: &dyn StorageWrite,
    opts: &BuildOptions,
    max_names: usize,
) -> Result<Started, BuildError> {
    let leased: Vec<StorePath> = opts.paths.clone();
    let names: Vec<String> = leased.iter().map(|p| p.base_name().to_string()).collect();
    let lease_err =
        |e: io::Error| BuildError::Input(format!("cannot lease in {}: {e}", storage.describe()));
    let prepare_and_lease = || -> Result<Box<dyn Lease>, BuildError> {
        prepare_storage(storage)?;
        let mut lease = storage.lease().map_err(lease_err)?;
        lease.extend(&names).map_err(lease_err)?;
        Ok(lease)
    };
    let list = || match opts.force {
        true => None,
        false => Present::list(storage, max_names).ok().flatten(),
    };
    if storage.requests_in_flight() <= 1 {
        // A directory: each answered at once, and its folders made first.
        let lease = prepare_and_lease()?;
        cache_info(storage, opts)?;
        let present = list();
        return Ok(Started {
            lease,
            leased,
            present,
        });
    }
    std::thread::scope(|s| {
        let info = s.spawn(|| cache_info(storage, opts));
        let present = s.spawn(list);
        let lease = prepare_and_lease();
        let info = info.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let present = present
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        info?;
        Ok(Started {
            lease: lease?,
            leased,
            present,
        })
    })
}

/// The storage made ready for writing.
fn prepare_storage(storage: &dyn StorageWrite) -> Result<(), BuildError> {
    storage
        .prepare()
        .map_err(|e| BuildError::Input(format!("cannot write to {}: {e}", storage.describe())))
}

/// `nix-cache-info`: checked against the store if there is one, written if there is none.
fn cache_info(storage: &dyn StorageWrite, opts: &BuildOptions) -> Result<(), BuildError> {
    let where_ = storage.describe();
    let existing = storage
        .read_small(&CacheKey::CacheInfo, 64 << 10)
        .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
    match existing {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let existing = CacheInfo::parse(&text)
                .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
            if let Some(dir) = existing
                .store_dir
                .as_deref()
                .filter(|d| *d != opts.store_dir.as_str())
            {
                return Err(BuildError::Input(format!(
                    "{} is a cache for store {dir}, not {}",
                    opts.to.display(),
                    opts.store_dir
                )));
            }
        }
        None => {
            let mut info = CacheInfo::new(opts.store_dir.as_str());
            info.want_mass_query = opts.want_mass_query.then_some(true);
            info.priority = Some(opts.priority);
            storage
                .put_if_absent(&CacheKey::CacheInfo, info.to_text().as_bytes())
                .and_then(|_| storage.barrier())
                .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
        }
    }
    Ok(())
}

pub(super) fn read_existing(
    storage: &dyn StorageWrite,
    path: &StorePath,
) -> Result<Option<NarInfo>, BuildError> {
    let key = CacheKey::narinfo(path.hash_part()).map_err(|e| BuildError::Input(e.to_string()))?;
    let at = || storage.locate(&key);
    let Some(bytes) = storage
        .read_small(&key, MAX_NARINFO_SIZE as u64)
        .map_err(|e| BuildError::Input(format!("{}: {e}", at())))?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        BuildError::Input(format!(
            "{}: existing narinfo is not UTF-8; rerun with --force",
            at()
        ))
    })?;
    NarInfo::parse(&text).map(Some).map_err(|e| {
        BuildError::Input(format!(
            "{}: existing narinfo is corrupt ({e}); rerun with --force",
            at()
        ))
    })
}

/// Narinfos whose NARs and references are stored, published together after one barrier.
#[derive(Default)]
pub(super) struct Batch {
    ready: Vec<Done>,
    since: Option<Instant>,
}

impl Batch {
    pub(super) fn extend(&mut self, done: Option<Done>) {
        if let Some(done) = done {
            self.since.get_or_insert_with(Instant::now);
            self.ready.push(done);
        }
    }

    /// Full, or waiting long enough.
    pub(super) fn due(&self) -> bool {
        self.ready.len() >= BATCH_MAX || self.since.is_some_and(|t| t.elapsed() >= BATCH_WINDOW)
    }

    /// How long to wait for a worker before the batch falls due.
    pub(super) fn wait(&self, at_most: Duration) -> Duration {
        match self.since {
            Some(t) => BATCH_WINDOW.saturating_sub(t.elapsed()).min(at_most),
            None => at_most,
        }
    }

    /// One barrier (every NAR, listing and narinfo of the batch becomes durable), then the
    /// commits, in the order the paths became ready: a narinfo after its references.
    pub(super) fn publish(
        &mut self,
        storage: &dyn StorageWrite,
        summary: &mut BuildSummary,
        progress: &mut impl FnMut(Progress),
        force: bool,
    ) -> Result<(), BuildError> {
        self.since = None;
        if self.ready.is_empty() {
            return Ok(());
        }
        let where_ = storage.describe();
        storage
            .barrier()
            .map_err(|e| BuildError::Input(format!("{where_}: {e}")))?;
        // Committed in waves, each wave's commits at once (on remote storage, one round trip's
        // wait for them all): a narinfo's wave comes after those of its references in the batch.
        for wave in waves(self.ready.drain(..).collect()) {
            let committed = map_concurrently(wave, storage.requests_in_flight(), |d| {
                commit_path(d, &where_, force)
            });
            for c in committed {
                let c = c?;
                summary.paths += 1;
                if c.written {
                    summary.written += 1;
                } else {
                    summary.skipped += 1;
                }
                summary.deduplicated += u64::from(c.deduplicated);
                summary.nar_bytes += c.nar_size;
                summary.file_bytes += if c.deduplicated { 0 } else { c.file_size };
                summary.in_cache.push((
                    c.path.clone(),
                    EntryInfo {
                        nar_size: c.nar_size,
                        file_size: Some(c.file_size),
                        references: c.references,
                    },
                ));
                progress(Progress::PathDone {
                    path: c.path,
                    nar_size: c.nar_size,
                    written: c.written,
                });
            }
        }
        Ok(())
    }
}

/// What a committed path adds to the summary.
struct Committed {
    /// The narinfo is ours (not one another writer published meanwhile).
    written: bool,
    path: StorePath,
    references: std::collections::BTreeSet<StorePath>,
    nar_size: u64,
    file_size: u64,
    deduplicated: bool,
}

/// A path's replacing NAR, listing and narinfo, committed in that order.
fn commit_path(d: Done, where_: &str, force: bool) -> Result<Committed, BuildError> {
    let hash_part = d.info.path.hash_part().to_string();
    let commit = |staged: Box<dyn Staged>, name: String| {
        let key = CacheKey::parse(&name).map_err(|e| BuildError::Input(e.to_string()))?;
        staged
            .commit(&key, Put::Replace)
            .map_err(|e| BuildError::Input(format!("{where_}: {e}")))
    };
    if let Some((nar, key)) = d.replacing {
        nar.commit(&key, Put::Replace)
            .map_err(|e| BuildError::Input(format!("{where_}: {e}")))?;
    }
    if let Some(listing) = d.listing {
        commit(listing, format!("{hash_part}.ls"))?;
    }
    // Create-if-absent: a narinfo another writer published meanwhile stays (its NAR is there);
    // only `--force` replaces.
    let how = if force { Put::Replace } else { Put::IfAbsent };
    let key = CacheKey::narinfo(&hash_part).map_err(|e| BuildError::Input(e.to_string()))?;
    let written = d
        .narinfo
        .commit(&key, how)
        .map_err(|e| BuildError::Input(format!("{where_}: {e}")))?;
    Ok(Committed {
        written: matches!(written, crate::cache::storage::Committed::Written),
        references: d.info.references,
        path: d.info.path,
        nar_size: d.nar_size,
        file_size: d.file_size,
        deduplicated: d.deduplicated,
    })
}

/// The batch (in the order its paths became ready: references first) in waves: a path's wave is
/// one after the latest wave of its references in the batch, 0 when it has none there.
fn waves(ready: Vec<Done>) -> Vec<Vec<Done>> {
    let mut wave_of: HashMap<StorePath, usize> = HashMap::new();
    let mut waves: Vec<Vec<Done>> = Vec::new();
    for d in ready {
        let wave = d
            .info
            .references
            .iter()
            .filter(|r| **r != d.info.path)
            .filter_map(|r| wave_of.get(r).map(|w| w + 1))
            .max()
            .unwrap_or(0);
        wave_of.insert(d.info.path.clone(), wave);
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(d);
    }
    waves
}
