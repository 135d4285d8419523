//! A build's walk of the closure: the queue of paths to take in, what the cache and the
//! upstreams said of them, the work finished and waiting for its references, and what is
//! published. [`super::build_cache_upstream`] drives it: takes the queue in, starts the paths to
//! build, and hands back each path's finished work.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::publish::{read_existing, Batch};
use super::worker::Workers;
use super::{
    ask_upstream, enqueue, lease_queued, BuildError, BuildOptions, BuildSummary, Done, Found,
    Metadata, Progress, LOOKUPS_AT_ONCE,
};
use crate::cache::metadata::PathInfo;
use crate::cache::order::PublishOrder;
use crate::host::concurrent::map_concurrently;
use crate::host::upstream::Upstreams;
use crate::store_path::StorePath;

/// What taking the queue in gave: the paths to build (largest first), and the progress of
/// those already in the cache (told once the total they belong to is).
pub(super) struct Taken {
    pub(super) to_build: Vec<PathInfo>,
    pub(super) already_there: Vec<Progress>,
}

pub(super) struct Walk<'a> {
    opts: &'a BuildOptions,
    upstream: &'a Upstreams,
    metadata: &'a Metadata,
    pub(super) summary: BuildSummary,
    /// The first error: no more paths are taken in, the work in flight is waited for.
    pub(super) first_error: Option<BuildError>,
    /// Work whose references are published: published at the next barrier.
    pub(super) batch: Batch,
    /// The closure's total NAR size, while every size is known (not when scanning).
    pub(super) total_bytes: Option<u64>,
    /// NAR bytes of the paths already in the cache.
    pub(super) skipped_bytes: u64,
    order: PublishOrder,
    seen: HashSet<StorePath>,
    queue: Vec<StorePath>,
    /// Queued paths whose narinfo was looked up ahead, in the cache and upstream.
    looked_up: HashMap<StorePath, Found>,
    /// Paths left out (an upstream serves them).
    left_out: BTreeSet<String>,
    upstream_warnings: BTreeSet<String>,
    /// Paths leased (before they are looked for in the cache: one found there stays).
    leased: HashSet<StorePath>,
    /// Finished work waiting to be published (by path).
    finished: HashMap<StorePath, Done>,
}

impl<'a> Walk<'a> {
    /// The walk from the given paths (`leased`: those the build's start leased).
    pub(super) fn new(
        opts: &'a BuildOptions,
        upstream: &'a Upstreams,
        metadata: &'a Metadata,
        leased: Vec<StorePath>,
    ) -> Walk<'a> {
        let mut walk = Walk {
            opts,
            upstream,
            metadata,
            summary: BuildSummary::default(),
            first_error: None,
            batch: Batch::default(),
            total_bytes: Some(0),
            skipped_bytes: 0,
            order: PublishOrder::new([]),
            seen: HashSet::new(),
            queue: Vec::new(),
            looked_up: HashMap::new(),
            left_out: BTreeSet::new(),
            upstream_warnings: BTreeSet::new(),
            leased: leased.into_iter().collect(),
            finished: HashMap::new(),
        };
        // In the order given (the last is taken in first).
        for p in &opts.paths {
            if walk.seen.insert(p.clone()) {
                walk.queue.push(p.clone());
            }
        }
        walk
    }

    /// The paths of the build: those seen, less those left out.
    pub(super) fn kept(&self) -> u64 {
        (self.seen.len() - self.left_out.len()) as u64
    }

    /// Takes in the queued paths: skips those whose narinfo exists, looks the others up, and
    /// follows references (known up front from metadata, or once a path is scanned). Stops at
    /// the first error (kept in `first_error`); a failed lease or look-up is returned.
    pub(super) fn take_in(&mut self, workers: &Workers) -> Result<Taken, BuildError> {
        let mut taken = Taken {
            to_build: Vec::new(),
            already_there: Vec::new(),
        };
        while self.first_error.is_none() {
            let Some(path) = self.queue.pop() else { break };
            if !self.leased.contains(&path) {
                lease_queued(workers, &path, &self.queue, &mut self.leased)?;
            }
            let found = if self.opts.force && self.upstream.is_empty() {
                Found::Absent
            } else {
                if !self.looked_up.contains_key(&path) {
                    self.look_up_ahead(workers, &path)?;
                }
                self.looked_up.remove(&path).unwrap_or(Found::Absent)
            };
            let existing = match found {
                Found::Cache(info) => Some(*info),
                Found::Absent => None,
                Found::Upstream(served) => {
                    if let Err(e) = self.leave_out(path, &served, workers) {
                        self.first_error = Some(e);
                    }
                    continue;
                }
            };
            let references = match &existing {
                Some(info) => {
                    self.skipped_bytes = self.skipped_bytes.saturating_add(info.nar_size);
                    self.total_bytes = self.total_bytes.map(|t| t.saturating_add(info.nar_size));
                    info.references.iter().cloned().collect::<BTreeSet<_>>()
                }
                None => match self.metadata.lookup(&path, &self.opts.store_dir) {
                    Ok(info) => {
                        self.total_bytes = self
                            .total_bytes
                            .zip(info.nar_size)
                            .map(|(t, n)| t.saturating_add(n));
                        let refs = match workers.candidates {
                            None => info.references.clone(),
                            Some(_) => BTreeSet::new(),
                        };
                        taken.to_build.push(info);
                        refs
                    }
                    Err(e) => {
                        self.first_error = Some(e);
                        break;
                    }
                },
            };
            if let Some(info) = existing {
                self.summary.paths += 1;
                self.summary.skipped += 1;
                self.summary.in_cache.push((
                    info.store_path.clone(),
                    crate::cache::index::EntryInfo::of_narinfo(&info),
                ));
                self.ready(path.clone(), &references);
                taken.already_there.push(Progress::PathDone {
                    path,
                    nar_size: info.nar_size,
                    written: false,
                });
            }
            if self.opts.closure {
                enqueue(&references, &mut self.seen, &mut self.queue);
            }
        }
        // Largest first, so that a big path never starts last and runs alone.
        taken
            .to_build
            .sort_by_key(|info| std::cmp::Reverse(info.nar_size));
        Ok(taken)
    }

    /// Looks `path` and the next queued paths up at once (on remote storage, the wait of one
    /// round trip for them all): in the cache, then upstream for those absent.
    fn look_up_ahead(&mut self, workers: &Workers, path: &StorePath) -> Result<(), BuildError> {
        let mut wanted = vec![path.clone()];
        wanted.extend(
            self.queue
                .iter()
                .rev()
                .filter(|p| !self.looked_up.contains_key(*p))
                .take(LOOKUPS_AT_ONCE - 1)
                .cloned(),
        );
        // Leased before they are looked for: one found there stays.
        let unleased: Vec<StorePath> = wanted
            .iter()
            .filter(|p| !self.leased.contains(*p))
            .cloned()
            .collect();
        if let Some((first, rest)) = unleased.split_first() {
            lease_queued(workers, first, rest, &mut self.leased)?;
        }
        let (opts, storage) = (self.opts, workers.storage);
        let found = map_concurrently(
            wanted.clone(),
            storage.requests_in_flight(),
            |p| match workers.present {
                _ if opts.force => Ok(None),
                Some(present) if !present.lists_narinfo_of(&p) => Ok(None),
                _ => read_existing(storage, &p),
            },
        );
        let mut absent = Vec::new();
        for (p, r) in wanted.into_iter().zip(found) {
            match r? {
                Some(info) => self.looked_up.insert(p, Found::Cache(Box::new(info))),
                None => {
                    absent.push(p.clone());
                    self.looked_up.insert(p, Found::Absent)
                }
            };
        }
        ask_upstream(
            self.upstream,
            &absent,
            &mut self.looked_up,
            &mut self.upstream_warnings,
            &opts.store_dir,
        );
        Ok(())
    }

    /// Leaves out a path an upstream serves; what it references is still followed (as the
    /// store has it, or as the upstream says when scanning).
    fn leave_out(
        &mut self,
        path: StorePath,
        served: &crate::narinfo::NarInfo,
        workers: &Workers,
    ) -> Result<(), BuildError> {
        let references = match (self.opts.closure, workers.candidates) {
            (false, _) => BTreeSet::new(),
            (true, Some(_)) => served.references.iter().cloned().collect(),
            (true, None) => {
                self.metadata
                    .lookup(&path, &self.opts.store_dir)?
                    .references
            }
        };
        self.left_out.insert(self.opts.store_dir.display(&path));
        self.ready(path, &BTreeSet::new());
        enqueue(&references, &mut self.seen, &mut self.queue);
        Ok(())
    }

    /// A path's work is done: its references queued (or, without the closure, not waited
    /// for), and it and what waited for it batched once their references are published.
    pub(super) fn finish(&mut self, done: Done) {
        let path = done.info.path.clone();
        let references = done.info.references.clone();
        if self.opts.closure {
            enqueue(&references, &mut self.seen, &mut self.queue);
        } else {
            // Without the closure, references outside the given paths are not waited for.
            let outside: Vec<StorePath> = references
                .iter()
                .filter(|r| !self.seen.contains(*r))
                .cloned()
                .collect();
            for r in outside {
                self.order.ready(r, &BTreeSet::new());
            }
        }
        self.finished.insert(path.clone(), done);
        self.ready(path, &references);
    }

    /// `path` is ready once `references` are: batches what that makes ready.
    fn ready(&mut self, path: StorePath, references: &BTreeSet<StorePath>) {
        for p in self.order.ready(path, references) {
            self.batch.extend(self.finished.remove(&p));
        }
    }

    /// The summary, once every path is published: an error if one never was.
    pub(super) fn end(mut self) -> Result<BuildSummary, BuildError> {
        if let Some((path, missing)) = self.order.stuck().next() {
            let missing: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
            return Err(BuildError::Path {
                path: self.opts.store_dir.display(path),
                message: format!(
                    "references {} were never published (a reference cycle?)",
                    missing.join(", ")
                ),
            });
        }
        self.summary.upstream = self.left_out.len() as u64;
        self.summary.upstream_paths = std::mem::take(&mut self.left_out).into_iter().collect();
        self.summary.upstream_warnings = std::mem::take(&mut self.upstream_warnings)
            .into_iter()
            .collect();
        Ok(self.summary)
    }
}
