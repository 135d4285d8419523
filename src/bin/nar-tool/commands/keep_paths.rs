//! `nar-tool keep-paths`: hold store paths' closures in a cache against `nar-tool gc` for as
//! long as a process lives (`nar_tool::cache::gc::run::lease_closure`).

use std::io::{self, Read, Write};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use nar_tool::cache::gc::roots;
use nar_tool::host::db::NixDb;
use nar_tool::host::store::temproots::TempRoots;
use nar_tool::host::store::StoreRoot;
use nar_tool::store_path::StoreDir;

use crate::args::{cache_location, UsageError};

/// Keep store paths and their closures in a cache while a command runs: a collection
/// (`nar-tool gc`) running meanwhile, or starting later, deletes none of them.
///
/// With a COMMAND, the lease lasts exactly as long as it runs, and its exit status is passed
/// through (128+N if signal N killed it). Without one, a line is printed once the lease holds,
/// and it is kept until standard input closes (for `coproc`: the lease ends when the shell
/// holding the pipe ends, however it ends). Fails (exit 1) if a path, or a path of its closure,
/// is not in the cache. The lease ends with this process however it ends, SIGKILL included.
#[derive(clap::Args)]
pub struct KeepPathsArgs {
    /// The cache: a directory, file://DIR, or s3://BUCKET[/PREFIX]?endpoint=… (none with --store-root)
    #[arg(value_name = "CACHE", required_unless_present = "store_root")]
    cache: Option<String>,
    /// The store paths to keep with their closures (/nix/store/HASH-NAME or HASH-NAME)
    #[arg(value_name = "STORE-PATH")]
    paths: Vec<String>,
    /// Keep the paths in the Nix store under ROOT (ROOT/nix/store, like local?root=ROOT) instead
    /// of a cache: as Nix's own temporary GC roots, so the real Nix's GC keeps them (and their
    /// closures) while the command runs
    #[arg(long, value_name = "ROOT")]
    store_root: Option<std::path::PathBuf>,
    /// The command to run while the paths are kept, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// The store directory of the paths
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
}

pub fn run(args: KeepPathsArgs) -> Result<ExitCode> {
    if let Some(root) = &args.store_root {
        // Every positional argument is a store path.
        let paths: Vec<String> = args.cache.iter().chain(&args.paths).cloned().collect();
        let (roots, held) = keep_in_store(root, &args.store_dir, &paths)?;
        return hold(held, &args.command, roots);
    }
    let cache = args.cache.as_deref().unwrap_or_default();
    if args.paths.is_empty() {
        return Err(UsageError("no STORE-PATH given".into()).into());
    }
    let location = cache_location(cache)?;
    if let nar_tool::cache::location::CacheLocation::Directory(dir) = &location {
        if !std::path::Path::new(dir).is_dir() {
            bail!("{}: no such cache directory", dir);
        }
    }
    let store_dir =
        StoreDir::new(&args.store_dir).map_err(|e| UsageError(format!("--store-dir: {e}")))?;
    let mut paths = Vec::new();
    for p in &args.paths {
        paths.push(roots::parse_arg(p, &store_dir).map_err(UsageError)?);
    }
    let storage = nar_tool::host::open::open_write(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let (lease, closure) =
        nar_tool::cache::gc::run::lease_closure(&*storage, &paths, |p| store_dir.display(p))?;
    let held = format!(
        "keeping {} paths (the closure of {}) in {location}",
        closure.len(),
        paths.len()
    );
    hold(held, &args.command, lease)
}

/// Holds `lease` while `command` runs (its exit status passed through), or without one until
/// standard input closes, after printing `held`.
fn hold<L>(held: String, command: &[String], lease: L) -> Result<ExitCode> {
    if command.is_empty() {
        let mut out = io::stdout().lock();
        writeln!(out, "{held}")?;
        out.flush()?;
        drop(out);
        // Held until standard input closes.
        let mut sink = [0u8; 4096];
        let mut stdin = io::stdin().lock();
        while stdin.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        drop(lease);
        return Ok(ExitCode::SUCCESS);
    }
    // Ctrl-C reaches the command (same process group): this process waits for it to end.
    let _ = ctrlc::set_handler(|| {});
    let status = Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("running {:?}", command[0]))?;
    drop(lease);
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Makes `paths` temporary roots of the store under `root` (Nix's protocol:
/// `host::store::temproots`), then checks they are valid there (after the roots are in place,
/// so no collection can take them in between).
fn keep_in_store(
    root: &std::path::Path,
    store_dir: &str,
    paths: &[String],
) -> Result<(TempRoots, String)> {
    let store_dir =
        StoreDir::new(store_dir).map_err(|e| UsageError(format!("--store-dir: {e}")))?;
    if paths.is_empty() {
        return Err(UsageError("no STORE-PATH given".into()).into());
    }
    let mut parsed = Vec::new();
    for p in paths {
        parsed.push(roots::parse_arg(p, &store_dir).map_err(UsageError)?);
    }
    let store = StoreRoot::new(root, store_dir.clone());
    if !store.has_db() {
        bail!("{}: no Nix store there (no Nix DB)", root.display());
    }
    let mut temp = TempRoots::create(&store).with_context(|| format!("in {}", root.display()))?;
    for p in &parsed {
        temp.add(p)
            .with_context(|| format!("adding a temporary root in {}", root.display()))?;
    }
    let db = NixDb::open_live(&store.db_file(), &store_dir)?;
    for p in &parsed {
        if db.lookup(p)?.is_none() {
            bail!(
                "{} is not valid in the store under {}",
                store_dir.display(p),
                root.display()
            );
        }
    }
    let held = format!(
        "keeping {} paths (and their closures) in {}",
        parsed.len(),
        store.real_store().display()
    );
    Ok((temp, held))
}
