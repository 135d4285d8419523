//! `fetch`: a closure out of a cache into a store root, without Nix. Narinfos are read and
//! judged as `verify` judges them (signatures by trusted keys, store directory, names), wave by
//! wave of references; then every path not yet there is restored, in parallel, under its Nix
//! path lock: its NAR read through every check (file size and hash, NarSize cap, NAR hash) into
//! a staging tree that becomes visible under the path's name, by one rename, only once all
//! passed. A path already valid (in the DB, or present when the root has no DB) is skipped; one
//! present but not registered in the root's DB is taken only if its contents hash to the
//! narinfo's NarHash. Registration (DB rows, a registration file) covers the paths whose whole
//! closure is present.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use super::db_write::DbWriter;
use super::lock::PathLock;
use super::restore::Staged;
use super::temproots::TempRoots;
use super::StoreRoot;
use crate::cache::fetch::{
    path_info, read_nar, read_narinfo, registrable, ConsumeError, NarFetchError,
};
use crate::cache::metadata::PathInfo;
use crate::cache::verify::{CacheStorage, VerifyOptions};
use crate::hash::{HashAlgo, HashingWriter};
use crate::host::concurrent::map_concurrently;
use crate::host::db::NixDb;
use crate::host::fs::{dump_path_serial, CaseHack, RestoreError};
use crate::host::storage::native_decoder;
use crate::nar::Limits;
use crate::narinfo::NarInfo;
use crate::store_path::StorePath;

/// How to fetch.
#[derive(Clone)]
pub struct FetchOptions {
    /// Trusted keys (none: signatures are not checked) and the store directory.
    pub verify: VerifyOptions,
    /// Fetch the references too (their closure), not only the paths named.
    pub closure: bool,
    /// Paths (and narinfos) at once.
    pub jobs: usize,
    /// Register the paths in the root's Nix DB (created if need be).
    pub write_db: bool,
}

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Restored from the cache.
    Fetched { nar_size: u64 },
    /// Already valid in the store.
    AlreadyValid,
    /// Present but not registered: its contents matched NarHash, so it was kept.
    Adopted,
    /// Failed: why (the cache's problem or a local error).
    Failed(String),
}

/// What a fetch did.
pub struct FetchReport {
    /// Every path of the closure, with its narinfo where it was read.
    pub outcomes: BTreeMap<StorePath, Outcome>,
    /// The metadata of the paths present with their whole closure (registrable), sorted.
    pub registrable: Vec<PathInfo>,
    /// How many paths were added to the DB (with `write_db`).
    pub registered: usize,
}

impl FetchReport {
    pub fn failures(&self) -> impl Iterator<Item = (&StorePath, &str)> {
        self.outcomes.iter().filter_map(|(p, o)| match o {
            Outcome::Failed(why) => Some((p, why.as_str())),
            _ => None,
        })
    }

    /// Paths restored or adopted by this run (what `--optimise` looks at).
    pub fn new_paths(&self) -> Vec<StorePath> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fetched { .. } | Outcome::Adopted))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// A fetch that could not run at all (the store or its DB unusable).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Db(#[from] crate::host::db::DbError),
}

/// Fetches `paths` (and, with `opts.closure`, their closure) from `storage` into `root`.
pub fn fetch(
    storage: &dyn CacheStorage,
    root: &StoreRoot,
    paths: &[StorePath],
    opts: &FetchOptions,
    on_path: impl Fn(&StorePath, &Outcome) + Sync,
) -> Result<FetchReport, FetchError> {
    let (closure, mut outcomes) = read_closure(storage, paths, opts);
    let store = root.real_store();
    fs::create_dir_all(&store).map_err(|source| FetchError::Io {
        path: store.clone(),
        source,
    })?;
    let mut db = if opts.write_db {
        Some(DbWriter::open(root)?)
    } else {
        None
    };
    let reader = match &db {
        None if root.has_db() => Some(NixDb::open(&root.db_file(), &root.store_dir)?),
        _ => None,
    };
    let has_db = db.is_some() || reader.is_some();
    // With a DB a collector may run: the closure is kept by temporary roots (Nix's protocol)
    // from before it is looked at until the paths are registered.
    let _temp_roots = if has_db {
        let mut temp = TempRoots::create(root).map_err(|source| FetchError::Io {
            path: root.root.join("nix/var/nix/temproots"),
            source,
        })?;
        for path in closure.keys() {
            temp.add(path).map_err(|source| FetchError::Io {
                path: root.root.join("nix/var/nix/gc.lock"),
                source,
            })?;
        }
        Some(temp)
    } else {
        None
    };
    let mut todo = Vec::new();
    for (path, info) in &closure {
        let valid = match (&db, &reader) {
            (Some(w), _) => w.is_valid(path)?,
            (None, Some(r)) => r.lookup(path)?.is_some(),
            (None, None) => false,
        };
        if valid {
            on_path(path, &Outcome::AlreadyValid);
            outcomes.insert(path.clone(), Outcome::AlreadyValid);
        } else {
            todo.push((path, info));
        }
    }
    let done = Mutex::new(Vec::new());
    map_concurrently(todo, opts.jobs, |(path, info)| {
        let outcome = fetch_one(storage, root, info, has_db);
        on_path(path, &outcome);
        done.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.clone(), outcome));
    });
    outcomes.extend(done.into_inner().unwrap_or_else(|e| e.into_inner()));
    let present: BTreeSet<StorePath> = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Failed(_)))
        .map(|(p, _)| p.clone())
        .collect();
    let ok = registrable(&closure, &present);
    let registrable: Vec<PathInfo> = ok.iter().map(|p| path_info(&closure[p])).collect();
    let registered = match &mut db {
        Some(w) => w.register(&registrable)?,
        None => 0,
    };
    Ok(FetchReport {
        outcomes,
        registrable,
        registered,
    })
}

/// The narinfos of the closure, read `jobs` at a time, wave by wave; paths whose narinfo
/// failed are outcomes already.
fn read_closure(
    storage: &dyn CacheStorage,
    paths: &[StorePath],
    opts: &FetchOptions,
) -> (BTreeMap<StorePath, NarInfo>, BTreeMap<StorePath, Outcome>) {
    let mut closure = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let mut seen: BTreeSet<StorePath> = paths.iter().cloned().collect();
    let mut wave: Vec<StorePath> = seen.iter().cloned().collect();
    while !wave.is_empty() {
        let read = map_concurrently(wave, opts.jobs, |p| {
            let r = read_narinfo(storage, &p, &opts.verify);
            (p, r)
        });
        let mut next = Vec::new();
        for (p, r) in read {
            match r {
                Ok(info) => {
                    if opts.closure {
                        for r in &info.references {
                            if seen.insert(r.clone()) {
                                next.push(r.clone());
                            }
                        }
                    }
                    closure.insert(p, info);
                }
                Err(problems) => {
                    let why = problems
                        .iter()
                        .map(|p| p.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ");
                    failed.insert(p, Outcome::Failed(why));
                }
            }
        }
        wave = next;
    }
    (closure, failed)
}

/// One path: locked, then skipped, adopted or restored.
fn fetch_one(
    storage: &dyn CacheStorage,
    root: &StoreRoot,
    info: &NarInfo,
    has_db: bool,
) -> Outcome {
    let dest = root.real_path(info.store_path.base_name());
    let mut lock = match PathLock::lock(&dest) {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    // Whatever happens, no lock file is left behind (a waiter opens a fresh one).
    lock.set_deletion();
    if fs::symlink_metadata(&dest).is_ok() {
        if !has_db {
            // Without a DB, a path present was put there whole (by a rename): take it as valid.
            return Outcome::AlreadyValid;
        }
        return match contents_hash(&dest) {
            Ok(h) if h == info.nar_hash => Outcome::Adopted,
            Ok(h) => Outcome::Failed(format!(
                "{} is present but not registered in the DB, and its contents hash to {h}, not \
                 the narinfo's NarHash {}: remove it (nix-store --delete) and fetch again",
                dest.display(),
                info.nar_hash
            )),
            Err(e) => Outcome::Failed(format!("{}: {e}", dest.display())),
        };
    }
    let limits = Limits {
        max_file_size: info.nar_size,
        ..Limits::default()
    };
    let staged = read_nar(storage, info, native_decoder, |nar| {
        Staged::restore(nar, &dest, limits).map_err(|e| match e {
            RestoreError::Nar(e) => ConsumeError::Nar(e),
            other => ConsumeError::Other(other.to_string()),
        })
    });
    let staged = match staged {
        Ok(s) => s,
        Err(NarFetchError::Cache(p)) => return Outcome::Failed(p.message),
        Err(NarFetchError::Local(e)) => return Outcome::Failed(e),
    };
    if let Err(e) = staged.commit(&dest) {
        return Outcome::Failed(format!("{}: {e}", dest.display()));
    }
    Outcome::Fetched {
        nar_size: info.nar_size,
    }
}

/// The NAR hash of what is at `path`.
fn contents_hash(path: &Path) -> Result<crate::hash::Hash, crate::host::fs::DumpError> {
    let w = dump_path_serial(
        path,
        HashingWriter::new(HashAlgo::Sha256, io::sink()),
        CaseHack(false),
    )?;
    Ok(w.finish().0)
}
