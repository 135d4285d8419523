//! A Nix store under a root directory (`ROOT/nix/store`, `ROOT/nix/var/nix/db`), written
//! without Nix the way Nix writes it: paths restored atomically with Nix's permissions and
//! timestamps under Nix's own path locks ([`lock`], [`restore`]), fetched from a cache
//! ([`fetch`]), registered in Nix's SQLite DB ([`db_write`]), deduplicated through `.links`
//! ([`optimise`]), kept alive by Nix's temporary roots ([`temproots`]) and collected ([`gc`]).

pub mod db_write;
pub mod drv_outputs;
pub mod fetch;
pub mod gc;
pub mod gc_roots;
pub mod lock;
pub mod optimise;
pub mod restore;
pub mod runtime_roots;
pub mod temproots;

use std::path::{Path, PathBuf};

use crate::store_path::StoreDir;

/// A store: its logical directory (`/nix/store`, what store paths name) under a root.
#[derive(Debug, Clone)]
pub struct StoreRoot {
    pub root: PathBuf,
    pub store_dir: StoreDir,
}

impl StoreRoot {
    pub fn new(root: &Path, store_dir: StoreDir) -> StoreRoot {
        StoreRoot {
            root: root.to_path_buf(),
            store_dir,
        }
    }

    /// Where the store directory really is: `ROOT/nix/store`.
    pub fn real_store(&self) -> PathBuf {
        self.root
            .join(self.store_dir.as_str().trim_start_matches('/'))
    }

    /// `ROOT/nix/var/nix/db`.
    pub fn db_dir(&self) -> PathBuf {
        self.root.join("nix/var/nix/db")
    }

    /// `ROOT/nix/var/nix/db/db.sqlite`.
    pub fn db_file(&self) -> PathBuf {
        self.db_dir().join("db.sqlite")
    }

    /// Whether the root has a Nix DB: its schema version file, written once the DB's tables
    /// are (by Nix, or by `db_write`), is there.
    pub fn has_db(&self) -> bool {
        self.db_dir().join("schema").is_file() && self.db_file().is_file()
    }

    /// Where a store path (its base name) really is.
    pub fn real_path(&self, base_name: &str) -> PathBuf {
        self.real_store().join(base_name)
    }
}

/// A random number for a temporary name.
pub(crate) fn random_u32() -> u32 {
    getrandom::u32().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    })
}
