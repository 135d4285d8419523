//! Garbage collection of a binary cache, from roots, with process-lifetime leases.
//!
//! - [`roots`]: what names a root (roots folders of files or symlinks, `--root`).
//! - [`plan`]: the pure part: the live set (closure of the roots), the order of deletions that
//!   keeps the cache valid at every moment, `--keep-since`, `--grace`, `--max-freed`, `--why`.
//! - [`run`]: a run over any [`StorageWrite`](crate::cache::storage::StorageWrite) (a directory,
//!   a bucket, memory): read the cache, plan, delete in batches that re-read the
//!   [leases](crate::cache::storage::lease); and [`run::lease_closure`], what `keep-paths` and
//!   `build-cache` hold.

pub mod plan;
pub mod roots;
pub mod run;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
