//! An HTTP cache whose narinfo lookups are remembered (`super`): a fresh answer comes from the
//! database without a request; a stale one (or any, with `refresh`) is revalidated with its ETag
//! (304: kept, and fresh again); "not there" is remembered for the negative TTL. Every other read
//! goes to the cache as it is.

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::db::{Row, Store};
use super::LookupConfig;
use crate::cache::layout::CacheKey;
use crate::cache::storage::StorageRead;
use crate::host::object::{Fetched, ObjectStorage};

pub struct Remembering {
    inner: ObjectStorage,
    /// The cache's base URL: what entries are kept under.
    base: String,
    store: Arc<Store>,
    config: &'static LookupConfig,
}

impl Remembering {
    /// The bucket, which every call but a narinfo read goes to.
    fn inner(&self) -> &ObjectStorage {
        &self.inner
    }

    /// `inner` with its lookups remembered, when remembering is on; else `inner` as it is.
    pub fn wrap(inner: ObjectStorage, base: &str) -> Box<dyn StorageRead> {
        match super::active() {
            Some((store, config)) => Box::new(Remembering {
                inner,
                base: base.trim_end_matches('/').to_string(),
                store,
                config,
            }),
            None => Box::new(inner),
        }
    }

    fn narinfo(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let name = key.to_string();
        let now = now();
        let held = self.store.get(&self.base, &name).unwrap_or_else(|e| {
            eprintln!("warning: {e}");
            None
        });
        if let Some(row) = &held {
            if !self.config.refresh && fresh(row, now, self.config) {
                return answer(row, key, limit);
            }
        }
        let etag = held
            .as_ref()
            .filter(|r| r.present)
            .and_then(|r| r.etag.clone());
        let remember = |row: &Row| {
            if let Err(e) = self.store.put(&self.base, &name, row) {
                eprintln!("warning: {e}");
            }
        };
        match self.inner.read_small_unless(key, limit, etag)? {
            Fetched::NotModified => {
                let Some(mut row) = held else {
                    return Err(io::Error::other("304 Not Modified without a copy"));
                };
                row.checked = now;
                if let Err(e) = self.store.touch(&self.base, &name, now) {
                    eprintln!("warning: {e}");
                }
                answer(&row, key, limit)
            }
            Fetched::Absent => {
                remember(&Row {
                    present: false,
                    body: Vec::new(),
                    etag: None,
                    checked: now,
                });
                Ok(None)
            }
            Fetched::Found { body, etag } => {
                remember(&Row {
                    present: true,
                    body: body.clone(),
                    etag,
                    checked: now,
                });
                Ok(Some(body))
            }
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether a remembered answer may be given without asking.
fn fresh(row: &Row, now: i64, config: &LookupConfig) -> bool {
    let ttl = if row.present {
        config.positive_ttl
    } else {
        config.negative_ttl
    };
    let age = now.saturating_sub(row.checked);
    // A clock set back makes an entry from the future: not trusted.
    (0..ttl.as_secs().min(i64::MAX as u64) as i64).contains(&age)
}

/// A remembered answer, as a read would give it.
fn answer(row: &Row, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
    if !row.present {
        return Ok(None);
    }
    if row.body.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{key} is larger than {limit} bytes (it has {})",
                row.body.len()
            ),
        ));
    }
    Ok(Some(row.body.clone()))
}

/// Only narinfo reads are remembered: everything else goes to the bucket.
impl StorageRead for Remembering {
    crate::forward_storage!(Remembering::inner =>
        describe, locate, stat, open, list, list_sized, requests_in_flight, read_range);
    fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
        match key {
            CacheKey::NarInfo(_) => self.narinfo(key, limit),
            _ => self.inner.read_small(key, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn freshness_by_ttl() {
        let config = LookupConfig {
            dir: None,
            positive_ttl: Duration::from_secs(100),
            negative_ttl: Duration::from_secs(10),
            refresh: false,
            max_entries: 10,
        };
        let row = |present, checked| Row {
            present,
            body: Vec::new(),
            etag: None,
            checked,
        };
        assert!(fresh(&row(true, 1000), 1099, &config));
        assert!(!fresh(&row(true, 1000), 1100, &config));
        assert!(fresh(&row(false, 1000), 1009, &config));
        assert!(!fresh(&row(false, 1000), 1010, &config));
        assert!(!fresh(&row(true, 2000), 1000, &config), "from the future");
    }
}
