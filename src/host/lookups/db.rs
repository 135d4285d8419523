//! The file remembered lookups live in: one SQLite database (as Nix's narinfo disk cache is),
//! shared safely by processes running at once (WAL journal, waiting on a busy lock), bounded to
//! a number of entries (the longest unchecked go first).

use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

/// How long a write waits for another process's.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Entries are counted (and the oldest dropped) once per this many writes.
const EVICT_EVERY: u64 = 64;

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The object was there (`body`, `etag`) or not.
    pub present: bool,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    /// When it was fetched or last revalidated, in seconds since the epoch.
    pub checked: i64,
}

pub struct Store {
    conn: Mutex<Connection>,
    max_entries: u64,
    writes: Mutex<u64>,
}

fn err<'a>(doing: &str, path: &'a Path) -> impl FnOnce(rusqlite::Error) -> io::Error + 'a {
    let doing = doing.to_string();
    move |e| io::Error::other(format!("{doing} the lookup cache {}: {e}", path.display()))
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path, max_entries: u64) -> io::Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(err("opening", path))?;
        conn.busy_timeout(BUSY_WAIT).map_err(err("opening", path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("opening", path))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS lookups (
                cache TEXT NOT NULL,
                key TEXT NOT NULL,
                present INTEGER NOT NULL,
                body BLOB NOT NULL,
                etag TEXT,
                checked INTEGER NOT NULL,
                PRIMARY KEY (cache, key)
            );
            CREATE INDEX IF NOT EXISTS lookups_checked ON lookups (checked);",
        )
        .map_err(err("setting up", path))?;
        let store = Store {
            conn: Mutex::new(conn),
            max_entries: max_entries.max(1),
            writes: Mutex::new(0),
        };
        store.evict()?;
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, cache: &str, key: &str) -> io::Result<Option<Row>> {
        self.conn()
            .query_row(
                "SELECT present, body, etag, checked FROM lookups WHERE cache = ?1 AND key = ?2",
                params![cache, key],
                |r| {
                    Ok(Row {
                        present: r.get(0)?,
                        body: r.get(1)?,
                        etag: r.get(2)?,
                        checked: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| io::Error::other(format!("reading the lookup cache: {e}")))
    }

    pub fn put(&self, cache: &str, key: &str, row: &Row) -> io::Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO lookups (cache, key, present, body, etag, checked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![cache, key, row.present, row.body, row.etag, row.checked],
            )
            .map_err(|e| io::Error::other(format!("writing the lookup cache: {e}")))?;
        let due = {
            let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
            *writes += 1;
            *writes % EVICT_EVERY == 0
        };
        if due {
            self.evict()?;
        }
        Ok(())
    }

    /// Marks an entry as checked (revalidated) at `checked`.
    pub fn touch(&self, cache: &str, key: &str, checked: i64) -> io::Result<()> {
        self.conn()
            .execute(
                "UPDATE lookups SET checked = ?3 WHERE cache = ?1 AND key = ?2",
                params![cache, key, checked],
            )
            .map(drop)
            .map_err(|e| io::Error::other(format!("writing the lookup cache: {e}")))
    }

    /// Drops the longest unchecked entries beyond the bound.
    pub fn evict(&self) -> io::Result<()> {
        self.conn()
            .execute(
                "DELETE FROM lookups WHERE rowid IN (
                    SELECT rowid FROM lookups ORDER BY checked ASC
                    LIMIT max(0, (SELECT count(*) FROM lookups) - ?1))",
                params![self.max_entries as i64],
            )
            .map(drop)
            .map_err(|e| io::Error::other(format!("trimming the lookup cache: {e}")))
    }

    #[cfg(test)]
    fn len(&self) -> i64 {
        self.conn()
            .query_row("SELECT count(*) FROM lookups", [], |r| r.get(0))
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(checked: i64) -> Row {
        Row {
            present: true,
            body: b"StorePath: /nix/store/x\n".to_vec(),
            etag: Some("\"e\"".into()),
            checked,
        }
    }

    #[test]
    fn kept_touched_and_bounded_shared_by_two_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lookups.sqlite");
        let a = Store::open(&path, 100).unwrap();
        let b = Store::open(&path, 100).unwrap();
        a.put("http://c", "k.narinfo", &row(5)).unwrap();
        assert_eq!(b.get("http://c", "k.narinfo").unwrap(), Some(row(5)));
        assert_eq!(b.get("http://other", "k.narinfo").unwrap(), None);
        b.touch("http://c", "k.narinfo", 9).unwrap();
        assert_eq!(a.get("http://c", "k.narinfo").unwrap().unwrap().checked, 9);
        for i in 0..300 {
            a.put("http://c", &format!("{i}.narinfo"), &row(100 + i))
                .unwrap();
        }
        a.evict().unwrap();
        assert_eq!(a.len(), 100);
        // The newest stay.
        assert!(a.get("http://c", "299.narinfo").unwrap().is_some());
        assert!(a.get("http://c", "0.narinfo").unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lookups.sqlite");
        std::fs::write(&path, b"not a database at all, just some bytes").unwrap();
        let e = Store::open(&path, 10).err().unwrap();
        assert!(e.to_string().contains("the lookup cache"), "{e}");
    }
}
