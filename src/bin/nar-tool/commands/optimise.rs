//! `nar-tool optimise`: Nix's `.links` deduplication of a store under a root
//! (`host::store::optimise`), reporting as `nix-store --optimise` does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::host::concurrent::map_concurrently;
use nar_tool::host::db::NixDb;
use nar_tool::host::store::optimise::{OptimiseStats, Optimiser};
use nar_tool::host::store::StoreRoot;
use nar_tool::store_path::{StoreDir, StorePath};

use crate::util::jobs_or_cores;

/// Hard-link identical files of the store under ROOT through ROOT/nix/store/.links, as
/// `nix-store --optimise` does (the valid paths of its DB, or every store path without a DB)
#[derive(clap::Args)]
pub struct OptimiseArgs {
    /// The store's root (ROOT/nix/store)
    #[arg(long, value_name = "ROOT")]
    store_root: PathBuf,
    /// The logical store directory
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
    /// Only count what would be freed; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Paths looked at at once [default: the number of cores]
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
}

pub fn run(args: OptimiseArgs) -> Result<ExitCode> {
    let root = StoreRoot::new(&args.store_root, StoreDir::new(&args.store_dir)?);
    let paths = store_paths(&root)?;
    let stats = optimise_paths(&root, &paths, args.dry_run, jobs_or_cores(args.jobs))?;
    if args.dry_run {
        eprintln!("would free: {}", stats.nix_message());
    } else {
        eprintln!("{}", stats.nix_message());
    }
    Ok(ExitCode::SUCCESS)
}

/// The paths to optimise: the DB's valid paths, or the store directory's store paths.
fn store_paths(root: &StoreRoot) -> Result<Vec<StorePath>> {
    if root.has_db() {
        let db = NixDb::open_live(&root.db_file(), &root.store_dir)?;
        return Ok(db.valid_paths()?);
    }
    let store = root.real_store();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&store) {
        Ok(rd) => rd,
        // An empty store (not made yet): nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", store.display())),
    };
    for e in entries {
        let e = e.with_context(|| format!("reading {}", store.display()))?;
        if let Some(name) = e.file_name().to_str() {
            if let Ok(p) = StorePath::from_base_name(name) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Optimises `paths` of `root`, `jobs` at once.
pub fn optimise_paths(
    root: &StoreRoot,
    paths: &[StorePath],
    dry_run: bool,
    jobs: usize,
) -> Result<OptimiseStats> {
    let store = root.real_store();
    let optimiser = Optimiser::new(&store, dry_run)?;
    let results = map_concurrently(paths.to_vec(), jobs, |p| {
        optimiser.optimise_path(&root.real_path(p.base_name()))
    });
    for r in results {
        r?;
    }
    Ok(optimiser.stats())
}
