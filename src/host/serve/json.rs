//! The inspector's JSON listings (Nix never asks for them), each bounded whatever the cache holds:
//!
//! - `GET /_nar-tool/narinfos?offset=O&limit=L`: the narinfo names of the sorted listing (by the
//!   one rule every face uses: `bogus.narinfo` too, the verifier reports it);
//! - `GET /_nar-tool/nar-files?offset=O&limit=L`: the names under `nar/` (`nar/<name>`);
//! - `GET /_nar-tool/narinfo-texts?offset=O&limit=L`: the narinfos with their texts, so the
//!   inspector need not make one request per narinfo (a text is `null` when it is not UTF-8,
//!   larger than [`MAX_NARINFO`], or gone meanwhile: the inspector then fetches it by itself);
//! - `GET /_nar-tool/lookup?q=QUERY…`: a search of the cache's lookup index, in pages of the same
//!   shape (`search.rs`).
//!
//! Each answers one page, `{"total": N, "offset": O, "items": […], "next": O' | null}`: at most
//! `limit` items (capped at [`MAX_NAMES_PAGE`] names or [`MAX_TEXTS_PAGE`] texts) and at most
//! [`PAGE_BYTES`] of JSON; `next` is where the following page starts. The listing a page is cut
//! from is taken once and kept for [`LISTING_TTL`] (paging through a cache lists it once, not
//! once a page), refused past [`MAX_LISTED`] names, and at most [`MAX_AT_ONCE`] pages are made at
//! once (others wait their turn): the work and memory of any number of requests stay bounded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::cache::layout::KeyDir;
use crate::cache::storage::listed_names;

/// Pages made at once.
pub(super) const MAX_AT_ONCE: usize = 4;
/// How long a listing is reused before the cache is listed again.
const LISTING_TTL: Duration = Duration::from_secs(10);
/// A folder holding more names than this is not listed (a 503 says why).
const MAX_LISTED: usize = 1_000_000;
/// The most names one page carries.
const MAX_NAMES_PAGE: usize = 10_000;
/// The most narinfo texts one page carries (and the default).
const MAX_TEXTS_PAGE: usize = 1000;
/// The most JSON one page holds (an item that would overflow it starts the next page).
const PAGE_BYTES: usize = 4 << 20;
/// Narinfos larger than this are left for the inspector to fetch (and judge) by itself.
const MAX_NARINFO: u64 = 256 << 10;

/// What a request under `/_nar-tool/` asks for, if it is a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Narinfos,
    NarFiles,
    NarinfoTexts,
    /// A search of the lookup index (`search.rs`), guarded and taking turns as the listings do.
    Lookup,
}

impl Listing {
    pub(super) fn of(name: &str) -> Option<Listing> {
        match name {
            "narinfos" => Some(Listing::Narinfos),
            "nar-files" => Some(Listing::NarFiles),
            "narinfo-texts" => Some(Listing::NarinfoTexts),
            "lookup" => Some(Listing::Lookup),
            _ => None,
        }
    }
}

/// Listings taken recently, reused for [`LISTING_TTL`].
#[derive(Default)]
pub(super) struct Listings {
    narinfos: Mutex<Option<Snapshot>>,
    nar_files: Mutex<Option<Snapshot>>,
}

struct Snapshot {
    taken: Instant,
    names: Arc<Vec<String>>,
}

impl Shelf {
    /// One page of a listing, as JSON. `InvalidInput`: a bad query; `OutOfMemory`: too many names.
    pub(super) fn listing_page(&self, which: Listing, query: &str) -> io::Result<Vec<u8>> {
        let (mut offset, mut limit) = (0usize, usize::MAX);
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let n = || {
                v.parse::<usize>().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("bad {k}: {v:?}"))
                })
            };
            match k {
                "offset" => offset = n()?,
                "limit" => limit = n()?,
                _ => {}
            }
        }
        let (dir, cap) = match which {
            Listing::Narinfos => (KeyDir::Root, MAX_NAMES_PAGE),
            Listing::NarFiles => (KeyDir::Nar, MAX_NAMES_PAGE),
            Listing::NarinfoTexts => (KeyDir::Root, MAX_TEXTS_PAGE),
            // Answered by `Shelf::lookup`, not listed.
            Listing::Lookup => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a listing"))
            }
        };
        let names = self.listing(dir)?;
        let wanted = names.iter().skip(offset).take(limit.min(cap));
        let mut page = Page::new(names.len(), offset);
        for name in wanted {
            let fits = if which == Listing::NarinfoTexts {
                page.push(&(name, self.narinfo_text(name)))?
            } else {
                page.push(name)?
            };
            if !fits {
                break;
            }
        }
        Ok(page.finish())
    }

    /// A narinfo's text for a page, if it is a key, UTF-8 and small enough.
    fn narinfo_text(&self, name: &str) -> Option<String> {
        let key = CacheKey::parse(name).ok()?;
        let bytes = self.cache.read_small(&key, MAX_NARINFO).ok()??;
        String::from_utf8(bytes).ok()
    }

    /// The sorted names of a folder (narinfos only at the root), listed at most once per
    /// [`LISTING_TTL`]; one listing at a time per folder (others wait for it and share it).
    fn listing(&self, dir: KeyDir) -> io::Result<Arc<Vec<String>>> {
        let slot = match dir {
            KeyDir::Root => &self.listings.narinfos,
            _ => &self.listings.nar_files,
        };
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = held.as_ref().filter(|s| s.taken.elapsed() < LISTING_TTL) {
            return Ok(s.names.clone());
        }
        *held = None;
        let mut seen = 0usize;
        let listed = self
            .cache
            .list(dir)?
            .take(MAX_LISTED + 1)
            .inspect(|_| seen += 1);
        let names = listed_names(dir, listed)?;
        if seen > MAX_LISTED {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "{} holds more than {MAX_LISTED} names in {}: too many to list",
                    self.cache.describe(),
                    if dir == KeyDir::Root {
                        "its root"
                    } else {
                        dir.path()
                    }
                ),
            ));
        }
        let names = Arc::new(names);
        *held = Some(Snapshot {
            taken: Instant::now(),
            names: names.clone(),
        });
        Ok(names)
    }
}

/// A page of JSON being written, its items limited to [`PAGE_BYTES`].
pub(super) struct Page {
    body: Vec<u8>,
    offset: usize,
    total: usize,
    items: usize,
}

impl Page {
    pub(super) fn new(total: usize, offset: usize) -> Page {
        let mut body = Vec::with_capacity(4096);
        body.extend_from_slice(
            format!(r#"{{"total":{total},"offset":{offset},"items":["#).as_bytes(),
        );
        Page {
            body,
            offset,
            total,
            items: 0,
        }
    }

    /// Adds an item if it fits (the first one always does); false once the page is full.
    pub(super) fn push(&mut self, item: &impl serde::Serialize) -> io::Result<bool> {
        let json = serde_json::to_vec(item).map_err(io::Error::other)?;
        if self.items > 0 && self.body.len() + json.len() + 64 > PAGE_BYTES {
            return Ok(false);
        }
        if self.items > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(&json);
        self.items += 1;
        Ok(true)
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        let end = self.offset.saturating_add(self.items);
        let next = if end < self.total {
            end.to_string()
        } else {
            "null".into()
        };
        self.body
            .extend_from_slice(format!(r#"],"next":{next}}}"#).as_bytes());
        self.body.push(b'\n');
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_at_its_byte_budget_and_says_where_the_next_starts() {
        let mut page = Page::new(10, 2);
        let big = "\u{1}".repeat(PAGE_BYTES / 6 / 2); // escaped as \u0001: six bytes each
        assert!(page.push(&big).unwrap());
        assert!(page.push(&"small").unwrap());
        assert!(!page.push(&big).unwrap(), "a second big one would overflow");
        let body = page.finish();
        assert!(body.len() <= PAGE_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        assert_eq!(
            (v["total"].as_u64(), v["next"].as_u64()),
            (Some(10), Some(4))
        );
        let mut last = Page::new(3, 2);
        assert!(last.push(&"x").unwrap());
        let v: serde_json::Value = serde_json::from_slice(&last.finish()).unwrap();
        assert!(v["next"].is_null());
    }
}
