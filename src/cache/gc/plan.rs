//! The collection's plan, computed from what the cache holds and what is live, touching nothing.
//!
//! Live = the closure of the roots through the narinfos' references. The rest goes in an order
//! that keeps the cache valid at every moment, so that a collection killed anywhere leaves a
//! cache Nix can use:
//! 1. dead narinfos, referrers first: a narinfo goes only once no narinfo that refers to it is
//!    left (a self-reference does not count), so no surviving narinfo ever misses a reference;
//! 2. the `.ls` listings of paths without a narinfo (that are not live: a leased path being
//!    published has its listing committed before its narinfo);
//! 3. NAR files that no surviving narinfo names and no lease pins, once older than the grace
//!    period (a client may be downloading one whose narinfo it read just before).
//!
//! `max_freed` keeps a prefix of that order: NARs nothing names first (freeing them deletes no
//! narinfo), then narinfos referrers-first, each with the NAR it was the last to name, until the
//! bytes freed reach it. A prefix of a referrers-first order is itself closed under references.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;

use crate::cache::graph::Graph;
use crate::cache::layout::CacheKey;
use crate::cache::storage::ObjectMeta;
use crate::store_path::StorePath;

use super::roots::Root;

/// A narinfo, as the collection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: StorePath,
    pub references: Vec<StorePath>,
    /// Its `NarSize`.
    pub nar_size: u64,
    /// Where its `URL` leads (`None`: outside the cache; it names no NAR of the cache).
    pub nar: Option<CacheKey>,
    /// Its `FileSize`, if given.
    pub file_size: Option<u64>,
    /// When the narinfo was written (seconds since the epoch), if the backend knows.
    pub modified: Option<u64>,
}

/// What the cache holds.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The narinfos that could be read, by hash part.
    pub entries: BTreeMap<String, Entry>,
    /// Narinfos that could not be read (hash part, why): kept, and naming nothing.
    pub unreadable: Vec<(String, String)>,
    /// Hash parts with a `.ls` listing.
    pub listings: BTreeSet<String>,
    /// NAR files (`nar/…` keys).
    pub nars: BTreeSet<CacheKey>,
}

/// How to collect.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Now, seconds since the epoch.
    pub now: u64,
    /// Narinfos written less than this many seconds ago are roots.
    pub keep_since: Option<u64>,
    /// NAR files modified less than this many seconds ago are kept.
    pub grace: u64,
    /// Stop once this many bytes would be freed.
    pub max_freed: Option<u64>,
}

/// A dead narinfo to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub hash_part: String,
    pub path: StorePath,
}

/// What a collection did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub paths_kept: u64,
    pub paths_freed: u64,
    /// NAR files' bytes (`FileSize` of the narinfos kept; measured for those freed).
    pub bytes_kept: u64,
    pub bytes_freed: u64,
    pub nars_freed: u64,
    pub listings_freed: u64,
    /// NAR files that nothing names, kept for the grace period.
    pub nars_in_grace: u64,
    /// Narinfos that could not be read, kept.
    pub unreadable_kept: u64,
    /// Whether `max_freed` stopped the collection before everything dead was deleted.
    pub stopped_at_max_freed: bool,
}

/// The plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every root (given, leased, recent), sorted.
    pub roots: Vec<Root>,
    /// Roots without a narinfo in the cache.
    pub missing_roots: Vec<Root>,
    /// The live paths that have a narinfo, sorted.
    pub live: Vec<StorePath>,
    /// Narinfos to delete, referrers first.
    pub narinfos: Vec<Doomed>,
    /// Listings to delete (hash parts).
    pub listings: Vec<String>,
    /// NAR files to delete, with their sizes.
    pub nars: Vec<(CacheKey, u64)>,
    pub summary: Summary,
}

/// The reference graph of the inventory.
pub fn graph(inventory: &Inventory) -> Graph {
    let mut g = Graph::new();
    for entry in inventory.entries.values() {
        g.insert(entry.path.clone(), entry.references.iter().cloned());
    }
    g
}

/// The narinfos written within `keep_since` seconds of `now`, as roots.
pub fn recent_roots(inventory: &Inventory, policy: &Policy) -> Vec<Root> {
    let Some(since) = policy.keep_since else {
        return Vec::new();
    };
    let cutoff = policy.now.saturating_sub(since);
    inventory
        .entries
        .values()
        .filter(|e| e.modified.is_some_and(|m| m >= cutoff))
        .map(|e| Root {
            path: e.path.clone(),
            source: "--keep-since".into(),
        })
        .collect()
}

/// Plans the collection. `roots` are every root (recent ones from [`recent_roots`] included),
/// `pinned` the NAR files leases name; `nar_meta` looks at a NAR file that would be deleted
/// (its size and age; `None`: gone meanwhile).
pub fn plan(
    inventory: &Inventory,
    graph: &Graph,
    roots: Vec<Root>,
    pinned: &BTreeSet<CacheKey>,
    policy: &Policy,
    mut nar_meta: impl FnMut(&CacheKey) -> io::Result<Option<ObjectMeta>>,
) -> io::Result<Plan> {
    let mut out = Plan::default();
    let mut roots = roots;
    roots.sort();
    roots.dedup();
    let root_paths: Vec<&StorePath> = roots.iter().map(|r| &r.path).collect();
    let live: HashSet<&StorePath> = graph
        .closure(root_paths.iter().copied())
        .into_iter()
        .collect();
    out.missing_roots = roots
        .iter()
        .filter(|r| !graph.contains(&r.path))
        .cloned()
        .collect();
    // Hash parts that stay: live paths, and roots without a narinfo yet (being published).
    let keep_hashes: HashSet<&str> = live
        .iter()
        .map(|p| p.hash_part())
        .chain(roots.iter().map(|r| r.path.hash_part()))
        .collect();
    let dead: Vec<(&String, &Entry)> = inventory
        .entries
        .iter()
        .filter(|(_, e)| !live.contains(&e.path))
        .collect();
    let order = referrers_first(graph, &dead);

    // How many surviving narinfos name each NAR.
    let mut named: HashMap<&CacheKey, usize> = HashMap::new();
    for entry in inventory.entries.values() {
        if let Some(nar) = &entry.nar {
            *named.entry(nar).or_default() += 1;
        }
    }
    let mut summary = Summary::default();
    let mut freed = 0u64;
    let mut nars = Vec::new();
    let mut consider = |nar: &CacheKey,
                        nars: &mut Vec<(CacheKey, u64)>,
                        summary: &mut Summary|
     -> io::Result<u64> {
        if pinned.contains(nar) || !inventory.nars.contains(nar) {
            return Ok(0);
        }
        let Some(meta) = nar_meta(nar)? else {
            return Ok(0);
        };
        let age = meta.modified.map(|m| policy.now.saturating_sub(m));
        if age.is_some_and(|a| a < policy.grace) {
            summary.nars_in_grace += 1;
            return Ok(0);
        }
        nars.push((nar.clone(), meta.size));
        Ok(meta.size)
    };
    for nar in &inventory.nars {
        if !named.contains_key(nar) {
            freed += consider(nar, &mut nars, &mut summary)?;
        }
    }
    let mut doomed = Vec::new();
    for (hash, entry) in order {
        if policy.max_freed.is_some_and(|max| freed >= max) {
            summary.stopped_at_max_freed = true;
            break;
        }
        doomed.push(Doomed {
            hash_part: hash.clone(),
            path: entry.path.clone(),
        });
        if let Some(nar) = &entry.nar {
            let left = named.get_mut(nar).expect("counted above");
            *left -= 1;
            if *left == 0 {
                freed += consider(nar, &mut nars, &mut summary)?;
            }
        }
    }
    let deleted: HashSet<&str> = doomed.iter().map(|d| d.hash_part.as_str()).collect();
    let unreadable: HashSet<&str> = inventory
        .unreadable
        .iter()
        .map(|(h, _)| h.as_str())
        .collect();
    out.listings = inventory
        .listings
        .iter()
        .filter(|h| {
            !keep_hashes.contains(h.as_str())
                && (deleted.contains(h.as_str()) || !inventory.entries.contains_key(*h))
                && !unreadable.contains(h.as_str())
        })
        .cloned()
        .collect();

    // What is kept: every narinfo not deleted, and the NARs they name (once each).
    let mut kept_nars: HashSet<&CacheKey> = HashSet::new();
    for (hash, entry) in &inventory.entries {
        if deleted.contains(hash.as_str()) {
            continue;
        }
        summary.paths_kept += 1;
        if let Some(nar) = &entry.nar {
            if kept_nars.insert(nar) {
                summary.bytes_kept += entry.file_size.unwrap_or(0);
            }
        }
    }
    summary.unreadable_kept = inventory.unreadable.len() as u64;
    summary.paths_kept += summary.unreadable_kept;
    summary.paths_freed = doomed.len() as u64;
    summary.bytes_freed = nars.iter().map(|(_, s)| s).sum();
    summary.nars_freed = nars.len() as u64;
    summary.listings_freed = out.listings.len() as u64;
    let mut live: Vec<StorePath> = live.into_iter().cloned().collect();
    live.sort();
    out.live = live;
    out.narinfos = doomed;
    out.nars = nars;
    out.summary = summary;
    out.roots = roots;
    Ok(out)
}

/// Dead narinfos ordered so that each comes after every dead narinfo that refers to it (Kahn's
/// algorithm on the dead paths, self-references left out; ties in store path order). Paths in
/// a reference cycle (which Nix never makes) come last, in store path order.
fn referrers_first<'a>(
    graph: &Graph,
    dead: &[(&'a String, &'a Entry)],
) -> Vec<(&'a String, &'a Entry)> {
    let paths: Vec<&StorePath> = dead.iter().map(|(_, e)| &e.path).collect();
    graph
        .referrers_first(&paths)
        .into_iter()
        .map(|i| dead[i])
        .collect()
}

/// The chain of references from a root to `target` (`--why`): the shortest over all roots,
/// the first root in order among equals; `None` when `target` is not live.
pub fn why<'a>(
    graph: &'a Graph,
    roots: &'a [Root],
    target: &StorePath,
) -> Option<(&'a Root, Vec<&'a StorePath>)> {
    let mut best: Option<(&Root, Vec<&StorePath>)> = None;
    for root in roots {
        if let Some(chain) = graph.why_depends(&root.path, target) {
            if best.as_ref().is_none_or(|(_, b)| chain.len() < b.len()) {
                best = Some((root, chain));
            }
        }
    }
    best
}
