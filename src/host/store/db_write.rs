//! Nix's SQLite DB written as Nix 2.8 writes it: `ROOT/nix/var/nix/db/db.sqlite` created with
//! Nix 2.8's `schema.sql` (WAL journal, `synchronous = normal`, foreign keys on), the schema
//! version file `db/schema` holding `10`, the `big-lock` file held shared while the DB is open
//! (Nix takes it exclusively only to migrate a schema), and paths registered as
//! `registerValidPaths` registers them: one transaction, `ValidPaths` rows (hash as
//! `sha256:<base16>`, registration time, deriver, NAR size, signatures space-separated, content
//! address; NULL where Nix writes NULL: no deriver, NAR size 0, no signatures, no content
//! address, and `ultimate` for a substituted path), then their `Refs`.
//!
//! A `.drv` path gets its `DerivationOutputs` rows as Nix's `addValidPath` gives them, after
//! the check Nix makes (`checkDerivationOutputs`); a derivation Nix would refuse fails the
//! whole transaction, as in Nix ([`super::drv_outputs`]).
//!
//! Not written: the tables of the experimental `ca-derivations` feature (Nix 2.8 adds them
//! only with it).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::StoreRoot;
use crate::cache::metadata::PathInfo;
use crate::hash::Encoding;
use crate::host::db::DbError;
use crate::store_path::{StoreDir, StorePath};

/// The schema version Nix 2.8 writes to `db/schema`.
pub const NIX_SCHEMA_VERSION: &str = "10";

/// Nix 2.8's `schema.sql`, statement for statement (SQLite keeps each `create` as written,
/// so `sqlite_master` matches a DB Nix made).
pub const SCHEMA_SQL: &str = r#"
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer, -- null implies "false"
    sigs             text, -- space-separated
    ca               text -- if not null, an assertion that the path is content-addressed; see ValidPathInfo
);

create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);

create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);

-- Paths can refer to themselves, causing a tuple (N, N) in the Refs
-- table.  This causes a deletion of the corresponding row in
-- ValidPaths to cause a foreign key constraint violation (due to `on
-- delete restrict' on the `reference' column).  Therefore, explicitly
-- get rid of self-references.
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;

create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null, -- symbolic output id, usually "out"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);

create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
"#;

/// How long opening a DB retries the steps SQLite refuses as "busy" without waiting.
const SETUP_PATIENCE: Duration = Duration::from_secs(120);

/// Runs `step` until it is not refused as busy or locked, or `deadline` passes.
fn retry_busy<T>(
    deadline: Instant,
    mut step: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(2);
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The Nix DB of a store root, open for registering paths.
pub struct DbWriter {
    conn: Connection,
    path: String,
    store_dir: StoreDir,
    /// `ROOT/nix/store`, where registered derivations are read.
    real_store: std::path::PathBuf,
    /// The big lock, held shared while open.
    _big_lock: File,
}

impl DbWriter {
    /// Opens the DB of `root`, creating it (and the folders Nix keeps beside it) as Nix does
    /// when there is none.
    pub fn open(root: &StoreRoot) -> Result<DbWriter, DbError> {
        let dir = root.db_dir();
        let file = root.db_file();
        let shown = file.display().to_string();
        let fail = |message: String| DbError {
            path: shown.clone(),
            message,
        };
        fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        for sub in ["profiles", "gcroots", "temproots"] {
            let d = root.root.join("nix/var/nix").join(sub);
            fs::create_dir_all(&d).map_err(|e| fail(format!("creating {}: {e}", d.display())))?;
        }
        let big_lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("big-lock"))
            .map_err(|e| fail(format!("opening big-lock: {e}")))?;
        // SAFETY: a valid descriptor we own.
        if unsafe { libc::flock(big_lock.as_raw_fd(), libc::LOCK_SH) } != 0 {
            let e = io::Error::last_os_error();
            return Err(fail(format!("taking big-lock: {e}")));
        }
        let schema_file = dir.join("schema");
        let version = match fs::read_to_string(&schema_file) {
            Ok(v) => Some(v.trim().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail(format!("reading {}: {e}", schema_file.display()))),
        };
        if let Some(v) = &version {
            if v != NIX_SCHEMA_VERSION {
                return Err(fail(format!(
                    "schema version {v:?} in {}; nar-tool writes Nix 2.8's version {NIX_SCHEMA_VERSION}",
                    schema_file.display()
                )));
            }
        }
        let create = version.is_none();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | if create {
                OpenFlags::SQLITE_OPEN_CREATE
            } else {
                OpenFlags::empty()
            };
        let conn = Connection::open_with_flags(&file, flags).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(3600))
            .map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(
            "pragma foreign_keys = 1; pragma synchronous = normal; pragma wal_autocheckpoint = 40000;",
        )
        .map_err(|e| fail(e.to_string()))?;
        // Switching to WAL and creating the schema take SQLite's write lock; when another
        // process is doing the same to a new DB, SQLite may answer "busy" at once rather than
        // wait (its deadlock avoidance), so these steps are retried for a while.
        let deadline = Instant::now() + SETUP_PATIENCE;
        let mode: String = retry_busy(deadline, || {
            conn.query_row("pragma main.journal_mode", [], |r| r.get(0))
        })
        .map_err(|e| fail(e.to_string()))?;
        if mode != "wal" {
            retry_busy(deadline, || {
                conn.query_row("pragma main.journal_mode = wal", [], |r| {
                    r.get::<_, String>(0)
                })
            })
            .map_err(|e| fail(format!("setting the journal mode: {e}")))?;
        }
        if create {
            retry_busy(deadline, || conn.execute_batch(SCHEMA_SQL))
                .map_err(|e| fail(format!("creating the schema: {e}")))?;
            crate::host::atomic::write_atomic(&schema_file, NIX_SCHEMA_VERSION.as_bytes(), 0o644)
                .map_err(|e| fail(format!("writing {}: {e}", schema_file.display())))?;
        }
        conn.query_row("SELECT count(*) FROM ValidPaths", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| fail(format!("not a Nix database: {e}")))?;
        Ok(DbWriter {
            conn,
            path: shown,
            store_dir: root.store_dir.clone(),
            real_store: root.real_store(),
            _big_lock: big_lock,
        })
    }

    fn fail(&self, message: String) -> DbError {
        DbError {
            path: self.path.clone(),
            message,
        }
    }

    /// Whether `path` is valid (registered).
    pub fn is_valid(&self, path: &StorePath) -> Result<bool, DbError> {
        self.id_of(&self.store_dir.display(path))
            .map(|id| id.is_some())
    }

    fn id_of(&self, full: &str) -> Result<Option<i64>, DbError> {
        self.conn
            .prepare_cached("select id from ValidPaths where path = ?1")
            .and_then(|mut st| st.query_row([full], |r| r.get(0)).optional())
            .map_err(|e| self.fail(e.to_string()))
    }

    /// Makes `path` invalid (its row, and its references' rows, go); refused by the DB while a
    /// valid path still references it. `Ok(false)` if it was not valid.
    pub fn invalidate(&self, path: &StorePath) -> Result<bool, DbError> {
        let full = self.store_dir.display(path);
        self.conn
            .execute("delete from ValidPaths where path = ?1", [&full])
            .map(|n| n > 0)
            .map_err(|e| self.fail(format!("{full}: {e}")))
    }

    /// Registers `infos` in one transaction, skipping those already valid; every reference
    /// must be valid already or among `infos`. Returns how many were added.
    pub fn register(&mut self, infos: &[PathInfo]) -> Result<usize, DbError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let store_dir = self.store_dir.clone();
        let shown = self.path.clone();
        let fail = |message: String| DbError {
            path: shown.clone(),
            message,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(e.to_string()))?;
        let mut added = BTreeSet::new();
        for info in infos {
            let full = store_dir.display(&info.path);
            let exists: Option<i64> = tx
                .query_row("select id from ValidPaths where path = ?1", [&full], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| fail(e.to_string()))?;
            if exists.is_some() {
                continue;
            }
            let (Some(hash), Some(size)) = (&info.nar_hash, info.nar_size) else {
                return Err(fail(format!("{full}: no NAR hash and size to register")));
            };
            let sigs = info.sigs.join(" ");
            tx.execute(
                "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    full,
                    hash.to_prefixed(Encoding::Base16),
                    now,
                    info.deriver.as_ref().map(|d| store_dir.display(d)),
                    (size != 0).then_some(size as i64),
                    None::<i64>,
                    (!sigs.is_empty()).then_some(sigs),
                    info.ca.as_deref().filter(|c| !c.is_empty()),
                ],
            )
            .map_err(|e| fail(format!("{full}: {e}")))?;
            added.insert(full);
        }
        for info in infos {
            let full = store_dir.display(&info.path);
            if !added.contains(&full) {
                continue;
            }
            for r in &info.references {
                let reference = store_dir.display(r);
                tx.execute(
                    "insert or replace into Refs (referrer, reference) \
                     select a.id, b.id from ValidPaths a, ValidPaths b where a.path = ?1 and b.path = ?2",
                    [&full, &reference],
                )
                .map_err(|e| fail(format!("{full}: reference {reference}: {e}")))
                .and_then(|n| {
                    if n == 1 {
                        Ok(())
                    } else {
                        Err(fail(format!(
                            "{full}: its reference {reference} is not valid"
                        )))
                    }
                })?;
            }
        }
        let drvs: Vec<StorePath> = infos
            .iter()
            .filter(|i| added.contains(&store_dir.display(&i.path)))
            .map(|i| i.path.clone())
            .collect();
        let rows = super::drv_outputs::DrvRows::new(&store_dir, &self.real_store)
            .rows(&drvs)
            .map_err(|e| {
                fail(format!(
                    "not registering a derivation Nix would refuse: {e}"
                ))
            })?;
        for (drv, outputs) in rows {
            let full = store_dir.display(&drv);
            for (id, out) in outputs {
                tx.execute(
                    "insert or replace into DerivationOutputs (drv, id, path) \
                     select id, ?2, ?3 from ValidPaths where path = ?1",
                    params![full, id, store_dir.display(&out)],
                )
                .map_err(|e| fail(format!("{full}: output {id}: {e}")))?;
            }
        }
        tx.commit().map_err(|e| fail(e.to_string()))?;
        Ok(added.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Processes that find no DB all create it; SQLite answers some of them "busy" at once
    /// while another switches the new file to WAL. Every opener must get the DB.
    #[test]
    fn openers_racing_to_create_the_db_all_get_it() {
        const OPENERS: usize = 6;
        for round in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let root = StoreRoot::new(dir.path(), StoreDir::default());
            let start = Arc::new(Barrier::new(OPENERS));
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    let (root, start) = (root.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        DbWriter::open(&root).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                if let Err(e) = opener.join().unwrap() {
                    panic!("round {round}: {e}");
                }
            }
        }
    }
}
