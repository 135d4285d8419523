//! Reads the Nix SQLite database (`nix/var/nix/db/db.sqlite`) read-only and lock-free: opened
//! with `immutable=1`, so it works on a read-only bind mount, never writes and never locks.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::cache::metadata::PathInfo;
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};

#[derive(Debug, thiserror::Error)]
#[error("Nix database {path}: {message}")]
pub struct DbError {
    pub path: String,
    pub message: String,
}

/// An open Nix database.
pub struct NixDb {
    conn: Connection,
    path: String,
    store_dir: StoreDir,
    /// A private copy of the DB and its WAL, when the WAL held commits (kept while open).
    _snapshot: Option<tempfile::TempDir>,
}

/// Escapes a file name for an SQLite `file:` URI.
fn uri_escape(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' => s.push_str(&format!("%{:02X}", c as u32)),
            c => s.push(c),
        }
    }
    s
}

/// Checks that the DB file `path` exists (else the error says `hint`); gives the constructor of
/// its errors.
fn existing<'a>(path: &'a Path, hint: &str) -> Result<impl Fn(String) -> DbError + 'a, DbError> {
    let fail = move |message: String| DbError {
        path: path.display().to_string(),
        message,
    };
    if !path.is_file() {
        return Err(fail(hint.to_string()));
    }
    Ok(fail)
}

impl NixDb {
    pub fn open(path: &Path, store_dir: &StoreDir) -> Result<NixDb, DbError> {
        let fail = existing(
            path,
            "not found (pass --db, --registration, --path-info or --scan-references)",
        )?;
        let abs = path.canonicalize().map_err(|e| fail(e.to_string()))?;
        // Nix keeps the DB in WAL mode: commits of a running Nix (or of one that died) may sit
        // in `db.sqlite-wal`, which `immutable=1` ignores. Then read a private copy of the DB and
        // its WAL instead (SQLite replays the WAL there, dropping any torn frame at its end);
        // the original is still never written to or locked.
        let wal = PathBuf::from(format!("{}-wal", abs.display()));
        let wal_has_commits = fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false);
        let (target, snapshot, flags) = if wal_has_commits {
            let dir = tempfile::tempdir()
                .map_err(|e| fail(format!("cannot make a snapshot directory: {e}")))?;
            let copy = dir.path().join("db.sqlite");
            fs::copy(&abs, &copy).map_err(|e| fail(format!("copying the DB: {e}")))?;
            fs::copy(&wal, dir.path().join("db.sqlite-wal"))
                .map_err(|e| fail(format!("copying its WAL: {e}")))?;
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (
                format!("file:{}", uri_escape(&copy.to_string_lossy())),
                Some(dir),
                flags,
            )
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (
                format!("file:{}?immutable=1", uri_escape(&abs.to_string_lossy())),
                None,
                flags,
            )
        };
        let conn = Connection::open_with_flags(&target, flags).map_err(|e| fail(e.to_string()))?;
        NixDb::checked(conn, path, store_dir, snapshot)
    }

    /// Opens a live DB read-only (not `immutable`): it sees commits still in the WAL and takes
    /// SQLite's read locks, as Nix's own readers do, without copying anything. For a store that
    /// is in use (one `lookup` query), where [`NixDb::open`] is for a snapshot of a store.
    pub fn open_live(path: &Path, store_dir: &StoreDir) -> Result<NixDb, DbError> {
        let fail = existing(path, "not found (the store root has no Nix database)")?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(|e| fail(e.to_string()))?;
        NixDb::checked(conn, path, store_dir, None)
    }

    /// The DB at `path` once its connection is open: failing early, with a clear message, on a
    /// file that is not a Nix DB (preparing a query of `ValidPaths` checks the table is there,
    /// without reading it).
    fn checked(
        conn: Connection,
        path: &Path,
        store_dir: &StoreDir,
        snapshot: Option<tempfile::TempDir>,
    ) -> Result<NixDb, DbError> {
        let shown = path.display().to_string();
        conn.prepare("select path from ValidPaths where path >= ?1 limit 1")
            .map_err(|e| DbError {
                path: shown.clone(),
                message: format!("not a Nix database: {e}"),
            })?;
        Ok(NixDb {
            conn,
            path: shown,
            store_dir: store_dir.clone(),
            _snapshot: snapshot,
        })
    }

    /// The valid path whose hash part is `hash_part`, as Nix's `queryPathFromHashPart` finds it:
    /// one indexed query (`path >= prefix`, the first row), then a prefix check.
    pub fn path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>, DbError> {
        let prefix = format!("{}/{hash_part}", self.store_dir.as_str());
        let found: Option<String> = self
            .conn
            .prepare_cached("select path from ValidPaths where path >= ?1 limit 1")
            .and_then(|mut st| st.query_row([&prefix], |r| r.get(0)).optional())
            .map_err(|e| self.fail(e.to_string()))?;
        match found {
            Some(p) if p.starts_with(&prefix) => self
                .store_dir
                .parse_path(&p)
                .map(Some)
                .map_err(|e| self.fail(format!("{p}: {e}"))),
            _ => Ok(None),
        }
    }

    /// The reference graph of every valid path, and each path's deriver where it has one
    /// (two queries, whatever the store's size).
    pub fn reference_graph(
        &self,
    ) -> Result<(crate::cache::graph::Graph, Vec<(StorePath, StorePath)>), DbError> {
        let parse = |p: &str| {
            self.store_dir
                .parse_path(p)
                .map_err(|e| self.fail(format!("{p}: {e}")))
        };
        let mut refs: std::collections::BTreeMap<StorePath, Vec<StorePath>> = Default::default();
        let mut derivers = Vec::new();
        let mut st = self
            .conn
            .prepare("select path, deriver from ValidPaths")
            .map_err(|e| self.fail(e.to_string()))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.fail(e.to_string()))?;
        for r in rows {
            let (p, d) = r.map_err(|e| self.fail(e.to_string()))?;
            let p = parse(&p)?;
            if let Some(d) = d.filter(|d| !d.is_empty()) {
                derivers.push((p.clone(), parse(&d)?));
            }
            refs.entry(p).or_default();
        }
        let mut st = self
            .conn
            .prepare(
                "select a.path, b.path from Refs r join ValidPaths a on a.id = r.referrer \
                 join ValidPaths b on b.id = r.reference",
            )
            .map_err(|e| self.fail(e.to_string()))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.fail(e.to_string()))?;
        for r in rows {
            let (a, b) = r.map_err(|e| self.fail(e.to_string()))?;
            refs.entry(parse(&a)?).or_default().push(parse(&b)?);
        }
        let mut graph = crate::cache::graph::Graph::new();
        for (p, r) in refs {
            graph.insert(p, r);
        }
        Ok((graph, derivers))
    }

    /// Every valid path, sorted (Nix's `queryAllValidPaths`).
    pub fn valid_paths(&self) -> Result<Vec<StorePath>, DbError> {
        let mut st = self
            .conn
            .prepare("select path from ValidPaths order by path")
            .map_err(|e| self.fail(e.to_string()))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.fail(e.to_string()))?;
        let mut out = Vec::new();
        for r in rows {
            let p = r.map_err(|e| self.fail(e.to_string()))?;
            out.push(
                self.store_dir
                    .parse_path(&p)
                    .map_err(|e| self.fail(format!("{p}: {e}")))?,
            );
        }
        Ok(out)
    }

    fn fail(&self, message: String) -> DbError {
        DbError {
            path: self.path.clone(),
            message,
        }
    }

    /// The metadata of `path`, or `None` if it is not valid in this database.
    pub fn lookup(&self, path: &StorePath) -> Result<Option<PathInfo>, DbError> {
        let full = self.store_dir.display(path);
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, hash, deriver, narSize, sigs, ca FROM ValidPaths WHERE path = ?1",
            )
            .and_then(|mut st| {
                st.query_row([&full], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.fail(e.to_string()))?;
        let Some((id, hash, deriver, nar_size, sigs, ca)) = row else {
            return Ok(None);
        };
        let mut info = PathInfo::new(path.clone());
        info.nar_hash = Some(
            Hash::parse_as(HashAlgo::Sha256, &hash)
                .map_err(|e| self.fail(format!("{full}: hash: {e}")))?,
        );
        info.nar_size = nar_size.and_then(|n| u64::try_from(n).ok());
        info.deriver = match deriver.filter(|d| !d.is_empty()) {
            Some(d) => Some(
                self.store_dir
                    .parse_path(&d)
                    .map_err(|e| self.fail(format!("{full}: deriver: {e}")))?,
            ),
            None => None,
        };
        info.sigs = sigs
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        info.ca = ca.filter(|c| !c.is_empty());
        let mut refs = BTreeSet::new();
        let mut st = self
            .conn
            .prepare_cached("SELECT v.path FROM Refs r JOIN ValidPaths v ON r.reference = v.id WHERE r.referrer = ?1")
            .map_err(|e| self.fail(e.to_string()))?;
        let rows = st
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(|e| self.fail(e.to_string()))?;
        for r in rows {
            let r = r.map_err(|e| self.fail(e.to_string()))?;
            refs.insert(
                self.store_dir
                    .parse_path(&r)
                    .map_err(|e| self.fail(format!("{full}: reference: {e}")))?,
            );
        }
        info.references = refs;
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of opening refuse, with the same words, a missing file (each with its hint), a
    /// file that is not SQLite and an SQLite DB without Nix's tables.
    #[test]
    fn what_is_not_a_nix_db_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = StoreDir::default();
        let missing = dir.path().join("missing.sqlite");
        let text = dir.path().join("text.sqlite");
        fs::write(
            &text,
            "not a database, but long enough to have a header of sorts\n",
        )
        .unwrap();
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("create table Other (x integer)")
            .unwrap();
        type Open = fn(&Path, &StoreDir) -> Result<NixDb, DbError>;
        for (open, hint) in [
            (NixDb::open as Open, "pass --db"),
            (
                NixDb::open_live as Open,
                "the store root has no Nix database",
            ),
        ] {
            let e = open(&missing, &store_dir).err().unwrap();
            assert_eq!(e.path, missing.display().to_string());
            assert!(e.message.contains(hint), "{}", e.message);
            for file in [&text, &other] {
                let e = open(file, &store_dir).err().unwrap();
                assert_eq!(e.path, file.display().to_string());
                assert!(
                    e.message.starts_with("not a Nix database: ")
                        || e.message.contains("not a database"),
                    "{}: {}",
                    file.display(),
                    e.message
                );
            }
        }
    }
}
