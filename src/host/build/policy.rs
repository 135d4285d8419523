//! The reference policy of a build, checked before anything is published: the closure of the
//! given paths from the metadata (or, for a path the metadata lacks, from its narinfo already
//! in the cache, as the build itself would take it), each given path checked against it.
//! When scanning for references, the closure's NARs are scanned once for this, before the
//! build scans them again.

use super::*;
use crate::cache::graph::Graph;
use crate::cache::policy::{render_all, ReferencePolicy};
use crate::host::fs::dump_path_serial;

/// Fails with [`BuildError::Policy`] when a given path breaks `policy`.
pub(super) fn check_policy(
    storage: &dyn StorageWrite,
    opts: &BuildOptions,
    metadata: &Metadata,
    policy: &ReferencePolicy,
) -> Result<(), BuildError> {
    if policy.is_empty() {
        return Ok(());
    }
    let mut graph = Graph::new();
    let mut seen: HashSet<StorePath> = opts.paths.iter().cloned().collect();
    let mut queue: Vec<StorePath> = seen.iter().cloned().collect();
    while let Some(path) = queue.pop() {
        if opts
            .interrupt
            .as_ref()
            .is_some_and(|i| i.load(Ordering::Relaxed))
        {
            return Err(BuildError::Interrupted);
        }
        let references = references_of(storage, opts, metadata, &path)?;
        for r in &references {
            if seen.insert(r.clone()) {
                queue.push(r.clone());
            }
        }
        graph.insert(path, references);
    }
    let violations = policy
        .check_all(&graph, &opts.paths)
        .map_err(|e| BuildError::Input(e.to_string()))?;
    if violations.is_empty() {
        return Ok(());
    }
    Err(BuildError::Policy(format!(
        "the reference policy is violated; nothing was written to the cache\n{}",
        render_all(&violations, &opts.store_dir)
    )))
}

fn references_of(
    storage: &dyn StorageWrite,
    opts: &BuildOptions,
    metadata: &Metadata,
    path: &StorePath,
) -> Result<BTreeSet<StorePath>, BuildError> {
    if let Metadata::Scan { candidates } = metadata {
        return scan(opts, path, candidates);
    }
    match metadata.lookup(path, &opts.store_dir) {
        Ok(info) => Ok(info.references),
        Err(e @ BuildError::NotInMetadata { .. }) if !opts.force => {
            match read_existing(storage, path)? {
                Some(info) => Ok(info.references.into_iter().collect()),
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The references found in `path`'s NAR, as the build finds them.
fn scan(
    opts: &BuildOptions,
    path: &StorePath,
    candidates: &[StorePath],
) -> Result<BTreeSet<StorePath>, BuildError> {
    let physical = physical_store(opts).join(path.base_name());
    let scanner = RefScanner::new(candidates.iter());
    let scanner =
        dump_path_serial(&physical, scanner, CaseHack(false)).map_err(|e| BuildError::Path {
            path: opts.store_dir.display(path),
            message: format!("scanning for references: {e}"),
        })?;
    Ok(scanner.finish())
}
