//! Remote lookups remembered, as Nix remembers them: the narinfos of an HTTP cache (and that one
//! is not there) are kept in a local database (`db.rs`) and answered from it while fresh, by
//! Nix's default TTLs (present: 30 days, absent: 1 hour), then revalidated with `If-None-Match`
//! and the ETag (`remembering.rs`). Only the commands that read remote caches turn this on
//! ([`configure`]); a library user gets plain reads.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod db;
mod remembering;

pub use remembering::Remembering;

/// Nix's `narinfo-cache-positive-ttl`.
pub const POSITIVE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Nix's `narinfo-cache-negative-ttl`.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(3600);
/// Entries kept at most (the longest unchecked are dropped first).
pub const MAX_ENTRIES: u64 = 100_000;
/// The database's file name in the directory.
const FILE: &str = "narinfos.sqlite";

/// How remote lookups are remembered.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// Where (`None`: not remembered).
    pub dir: Option<PathBuf>,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    /// Revalidate every answer, however fresh.
    pub refresh: bool,
    pub max_entries: u64,
}

impl Default for LookupConfig {
    fn default() -> LookupConfig {
        LookupConfig {
            dir: default_dir(),
            positive_ttl: POSITIVE_TTL,
            negative_ttl: NEGATIVE_TTL,
            refresh: false,
            max_entries: MAX_ENTRIES,
        }
    }
}

/// `$NAR_TOOL_LOOKUP_CACHE`, else `$XDG_CACHE_HOME/nar-tool/lookups`, else
/// `~/.cache/nar-tool/lookups`.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("NAR_TOOL_LOOKUP_CACHE") {
        return Some(dir);
    }
    let base = var("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| Some(var("HOME")?.join(".cache")))?;
    Some(base.join("nar-tool").join("lookups"))
}

struct Active {
    config: LookupConfig,
    /// Opened on first use; `None` if it could not be (said once).
    store: OnceLock<Option<Arc<db::Store>>>,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// Turns remembering on for this process (the first call counts).
pub fn configure(config: LookupConfig) {
    let _ = ACTIVE.set(Active {
        config,
        store: OnceLock::new(),
    });
}

/// The database and settings, if remembering is on and the database opens.
fn active() -> Option<(Arc<db::Store>, &'static LookupConfig)> {
    let active = ACTIVE.get()?;
    let dir = active.config.dir.as_ref()?;
    let store = active.store.get_or_init(|| {
        let path = dir.join(FILE);
        match db::Store::open(&path, active.config.max_entries) {
            Ok(store) => Some(Arc::new(store)),
            Err(e) => {
                eprintln!("warning: remote lookups are not remembered: {e}");
                None
            }
        }
    });
    Some((store.clone()?, &active.config))
}
