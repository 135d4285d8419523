//! Collecting a store under a root without Nix, cooperating with the real Nix: the GC lock
//! (`nix/var/nix/gc.lock`) taken exclusively (refused while Nix, or another collection, holds
//! it for more than a few seconds: a temporary root being added holds it for a moment); the collector's socket
//! (`gc-socket/socket`) served meanwhile, as Nix's collector serves it, so that a Nix process
//! that wants a temporary root while the collection runs tells it (the path and its closure are
//! then spared); roots found as Nix finds them ([`super::gc_roots`], and the runtime roots of
//! [`super::runtime_roots`]); live = their closure, with
//! the derivers of live paths (Nix's default `keep-derivations`); the rest made invalid in the
//! DB and deleted referrers first (the DB itself refuses to drop a path a valid path still
//! references), each renamed out of its name first so that it disappears at once; then the
//! `.links` entries nothing links to any more (one link left).

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::db_write::DbWriter;
use super::gc_roots::{find_roots, Roots};
use super::StoreRoot;
use crate::cache::graph::Graph;
use crate::host::db::{DbError, NixDb};
use crate::host::fs::remove_tree;
use crate::store_path::StorePath;

/// Why a collection could not run.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(
        "{0}: the GC lock is held (the real Nix is collecting, or adding a temporary root, or \
         another collection runs): try again later"
    )]
    Busy(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Db(#[from] DbError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> GcError + '_ {
    move |source| GcError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a collection found and did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub roots: Roots,
    pub live: Vec<StorePath>,
    /// Dead paths, in the order they go (or would go).
    pub dead: Vec<StorePath>,
    /// Paths deleted (none in a dry run).
    pub deleted: Vec<StorePath>,
    /// Bytes of the files deleted (those not linked elsewhere), `.links` entries included.
    pub bytes_freed: u64,
}

impl GcReport {
    /// Nix's summary line: `3 store paths deleted, 0.01 MiB freed`.
    pub fn nix_message(&self) -> String {
        format!(
            "{} store paths deleted, {:.2} MiB freed",
            self.deleted.len(),
            self.bytes_freed as f64 / (1024.0 * 1024.0)
        )
    }
}

/// The collector's socket, answering Nix processes that add temporary roots meanwhile.
struct RootsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
}

impl RootsServer {
    fn start(
        socket: PathBuf,
        root: StoreRoot,
        added: Arc<Mutex<Vec<StorePath>>>,
    ) -> io::Result<RootsServer> {
        if let Some(dir) = socket.parent() {
            fs::create_dir_all(dir)?;
        }
        let _ = fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (root, added) = (root.clone(), added.clone());
                        std::thread::spawn(move || serve_client(conn, &root, &added));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(RootsServer {
            stop,
            thread: Some(thread),
            socket,
        })
    }
}

/// Reads paths, one a line; each is recorded as a root before `1` acknowledges it.
fn serve_client(
    conn: std::os::unix::net::UnixStream,
    root: &StoreRoot,
    added: &Mutex<Vec<StorePath>>,
) {
    let _ = conn.set_nonblocking(false);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if let Ok((p, _)) = root.store_dir.parse_path_prefix(line.trim_end()) {
            added.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
        if out.write_all(b"1").is_err() {
            return;
        }
    }
}

impl Drop for RootsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// Live paths: the closure of `roots`, with the valid derivers of live paths (and theirs).
fn live_set(
    graph: &Graph,
    roots: &[&StorePath],
    derivers: &[(StorePath, StorePath)],
) -> HashSet<StorePath> {
    let mut live: HashSet<StorePath> = graph
        .closure(roots.iter().copied())
        .into_iter()
        .cloned()
        .collect();
    loop {
        let more: Vec<&StorePath> = derivers
            .iter()
            .filter(|(p, d)| live.contains(p) && !live.contains(d) && graph.contains(d))
            .map(|(_, d)| d)
            .collect();
        if more.is_empty() {
            return live;
        }
        let grown: Vec<StorePath> = graph.closure(more).into_iter().cloned().collect();
        live.extend(grown);
    }
}

/// Collects the store under `root` (only looks, with `dry_run`); the processes of the `/proc`
/// at `proc_dir`, if given, root what they use ([`super::runtime_roots`]). `on_delete` is told
/// of each path as it goes.
pub fn collect(
    root: &StoreRoot,
    dry_run: bool,
    proc_dir: Option<&Path>,
    mut on_delete: impl FnMut(&StorePath),
) -> Result<GcReport, GcError> {
    let state = root.root.join("nix/var/nix");
    let lock_path = state.join("gc.lock");
    let _gc_lock = take_gc_lock(&lock_path)?;
    let added = Arc::new(Mutex::new(Vec::new()));
    let _server = RootsServer::start(state.join("gc-socket/socket"), root.clone(), added.clone())
        .map_err(io_at(&state.join("gc-socket/socket")))?;

    let db = NixDb::open_live(&root.db_file(), &root.store_dir)?;
    let (graph, derivers) = db.reference_graph()?;
    let valid = db.valid_paths()?;
    drop(db);
    let mut report = GcReport {
        roots: find_roots(root).map_err(io_at(&state))?,
        ..GcReport::default()
    };
    if let Some(proc_dir) = proc_dir {
        let valid: HashSet<&StorePath> = valid.iter().collect();
        for (path, sources) in super::runtime_roots::find_runtime_roots(root, proc_dir) {
            if valid.contains(&path) {
                report.roots.entry(path).or_default().extend(sources);
            }
        }
    }
    let root_paths: Vec<&StorePath> = report.roots.keys().collect();
    let live = live_set(&graph, &root_paths, &derivers);
    let dead: Vec<&StorePath> = valid.iter().filter(|p| !live.contains(*p)).collect();
    report.live = {
        let mut v: Vec<StorePath> = live.iter().cloned().collect();
        v.sort();
        v
    };
    report.dead = graph
        .referrers_first(&dead)
        .into_iter()
        .map(|i| dead[i].clone())
        .collect();
    if dry_run {
        return Ok(report);
    }
    let writer = DbWriter::open(root)?;
    let store = root.real_store();
    let mut spared: HashSet<StorePath> = HashSet::new();
    let mut seen_added = 0;
    for path in report.dead.clone() {
        // Roots told over the socket since: their closures are spared.
        let guard = added.lock().unwrap_or_else(|e| e.into_inner());
        if guard.len() > seen_added {
            let new: Vec<&StorePath> = guard[seen_added..].iter().collect();
            spared.extend(live_set(&graph, &new, &derivers));
            seen_added = guard.len();
        }
        if spared.contains(&path) {
            continue;
        }
        // Invalid first (while the socket waits), then gone from its name at once.
        match writer.invalidate(&path) {
            Ok(true) => {}
            Ok(false) | Err(_) => continue,
        }
        drop(guard);
        let real = store.join(path.base_name());
        let trash = store.join(format!(
            ".{}.gc-{}-{}",
            path.base_name(),
            std::process::id(),
            super::random_u32()
        ));
        match fs::rename(&real, &trash) {
            Ok(()) => {
                report.bytes_freed += unshared_bytes(&trash);
                remove_tree(&trash).map_err(io_at(&trash))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&real)(e)),
        }
        on_delete(&path);
        report.deleted.push(path);
    }
    report.bytes_freed += remove_unused_links(&store.join(".links"))?;
    Ok(report)
}

/// The GC lock, exclusively, waiting at most a few seconds.
fn take_gc_lock(path: &Path) -> Result<File, GcError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let file = super::lock::open_lock_file(path).map_err(io_at(path))?;
    // A process adding a temporary root holds it shared for a moment: wait that out, but not a
    // collection (which holds it for its whole run).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        // SAFETY: a valid descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            return Err(GcError::Busy(path.display().to_string()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bytes of the regular files under `top` that have no other link.
fn unshared_bytes(top: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.nlink() == 1 {
            total += m.size();
        }
    }
    total
}

/// Deletes the `.links` entries nothing else links to; their bytes.
fn remove_unused_links(links: &Path) -> Result<u64, GcError> {
    let entries = match fs::read_dir(links) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(links)(e)),
    };
    let mut freed = 0;
    let names: BTreeSet<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    for p in names {
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.nlink() == 1 && fs::remove_file(&p).is_ok() {
                freed += m.size();
            }
        }
    }
    Ok(freed)
}
