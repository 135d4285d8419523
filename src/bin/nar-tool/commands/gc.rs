//! `nar-tool gc`: garbage collection of a binary cache (`nar_tool::cache::gc`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use nar_tool::cache::gc::plan::{self, Policy};
use nar_tool::cache::gc::roots::{self, Root};
use nar_tool::cache::gc::run::{self, Options, Outcome};
use nar_tool::cache::storage::StorageWrite;
use nar_tool::cache::verify::report::human_bytes;
use nar_tool::store_path::StoreDir;

use crate::args::{cache_location, duration, size, UsageError};

/// Delete what no root needs from a binary cache: narinfos, `.ls` listings, NAR files, and the
/// temporary files of writers that died.
///
/// Live = the closure (through references) of the roots: the cache's own `gcroots/` folder,
/// every --roots-dir, every --root, the narinfos newer than --keep-since, and the paths that
/// running `nar-tool keep-paths` and `nar-tool build-cache` processes hold. The rest goes in an
/// order that keeps the cache valid at every moment, even if the collection is killed:
/// narinfos referrers first, then listings, then NAR files no narinfo names any more (after
/// --grace). Paths leased while the collection runs are spared. One collection at a time per
/// cache; a full disk can be collected (nothing is written before deleting).
#[derive(clap::Args)]
pub struct GcArgs {
    /// The cache: a directory, file://DIR, or s3://BUCKET[/PREFIX]?endpoint=… (none with --store-root)
    #[arg(value_name = "CACHE", required_unless_present = "store_root")]
    cache: Option<String>,
    /// Collect the Nix store under ROOT (ROOT/nix/store, like local?root=ROOT) instead of a
    /// cache, with Nix's roots (gcroots/, profiles/, temporary roots of live processes, store
    /// paths running processes use as /proc shows them), as `nix-store --gc` would; refused
    /// while the real Nix holds the GC lock
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["roots", "roots_dirs", "keep_since", "max_freed", "why", "json", "cache"])]
    store_root: Option<PathBuf>,
    /// A store path to keep with its closure (/nix/store/HASH-NAME or HASH-NAME; repeatable)
    #[arg(long = "root", value_name = "STORE-PATH")]
    roots: Vec<String>,
    /// A folder of roots, as the cache's gcroots/: files named by a store path's base name
    /// (HASH-NAME), or symlinks to store paths (read, not followed; repeatable)
    #[arg(long = "roots-dir", value_name = "DIR")]
    roots_dirs: Vec<PathBuf>,
    /// Keep the narinfos written less than DURATION ago, with their closures (30m, 12h, 7d, 2w)
    #[arg(long, value_name = "DURATION")]
    keep_since: Option<String>,
    /// Keep NAR files modified less than DURATION ago even if no narinfo names them any more,
    /// for downloads in flight
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    grace: String,
    /// Stop once SIZE bytes of NAR files would be freed (500M, 20G, 1T)
    #[arg(long, value_name = "SIZE")]
    max_freed: Option<String>,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the roots (SOURCE -> STORE-PATH), change nothing
    #[arg(long, conflicts_with_all = ["print_live", "print_dead", "why"])]
    print_roots: bool,
    /// Print the live store paths (the roots' closure), change nothing
    #[arg(long, conflicts_with_all = ["print_dead", "why"])]
    print_live: bool,
    /// Print the store paths a collection would delete, in the order it would, change nothing
    #[arg(long, conflicts_with = "why")]
    print_dead: bool,
    /// Print why STORE-PATH is live: the chain of references from a root to it
    #[arg(long, value_name = "STORE-PATH")]
    why: Option<String>,
    /// Leave the cache's lookup index (nar-tool-index/) as it is; by default it is written
    /// anew after the collection, from what is left
    #[arg(long)]
    no_index: bool,
    /// Print the outcome as one JSON document
    #[arg(long)]
    json: bool,
    /// The store directory of the roots [default: the cache's nix-cache-info StoreDir, or /nix/store]
    #[arg(long, value_name = "DIR")]
    store_dir: Option<String>,
    /// With --store-root: ignore what running processes use (their /proc links, maps and
    /// environments), which Nix counts as roots
    #[arg(long, requires = "store_root")]
    no_runtime_roots: bool,
    /// Narinfos read, and listings and NAR files deleted, at once
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8)]
    jobs: usize,
}

pub fn run(args: GcArgs) -> Result<ExitCode> {
    if let Some(root) = &args.store_root {
        return collect_store(root, &args);
    }
    let location = cache_location(args.cache.as_deref().unwrap_or_default())?;
    if let nar_tool::cache::location::CacheLocation::Directory(dir) = &location {
        if !std::path::Path::new(dir).is_dir() {
            bail!(UsageError(format!("{}: no such cache directory", dir)));
        }
    }
    let policy = Policy {
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        keep_since: args
            .keep_since
            .as_deref()
            .map(|d| duration("--keep-since", d))
            .transpose()?,
        grace: duration("--grace", &args.grace)?,
        max_freed: args
            .max_freed
            .as_deref()
            .map(|s| size("--max-freed", s))
            .transpose()?,
    };
    if args.jobs == 0 {
        bail!(UsageError("--jobs 0: at least one".into()));
    }
    let storage = nar_tool::host::open::open_write(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let store_dir = crate::util::cache_store_dir(&*storage, args.store_dir.as_deref())?;
    let why = args
        .why
        .as_deref()
        .map(|w| roots::parse_arg(w, &store_dir).map_err(|e| UsageError(format!("--why: {e}"))))
        .transpose()?;
    let given = given_roots(&*storage, &args, &store_dir)?;
    let printing = args.print_roots || args.print_live || args.print_dead || why.is_some();
    let opts = Options {
        policy,
        roots: given,
        dry_run: args.dry_run || printing,
        jobs: args.jobs,
        index: (!args.no_index).then(|| store_dir.clone()),
        ..Options::default()
    };
    let outcome = run::collect(&*storage, &opts).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            anyhow::anyhow!("{e}; try again once it ends")
        } else {
            anyhow::Error::from(e).context(format!("collecting {location}"))
        }
    })?;
    if let Some(Err(e)) = &outcome.index {
        eprintln!(
            "nar-tool: warning: the collection is done, but the index of {location} could not be written: {e} (`nar-tool index` writes it anew)"
        );
    }
    for root in &outcome.plan.missing_roots {
        eprintln!(
            "nar-tool: note: root {} (from {}) is not in the cache",
            store_dir.display(&root.path),
            root.source
        );
    }
    let mut out = io::stdout().lock();
    let show = |p: &nar_tool::store_path::StorePath| store_dir.display(p);
    if args.print_roots {
        print_roots(&mut out, &outcome, &show, args.json)?;
    } else if args.print_live {
        let live: Vec<String> = outcome.plan.live.iter().map(show).collect();
        print_list(&mut out, &live, args.json)?;
    } else if args.print_dead {
        let dead: Vec<String> = outcome
            .plan
            .narinfos
            .iter()
            .map(|d| show(&d.path))
            .collect();
        print_list(&mut out, &dead, args.json)?;
    } else if let Some(target) = why {
        if !outcome.graph.contains(&target) {
            bail!("{} is not in the cache {location}", show(&target));
        }
        let Some((root, chain)) = plan::why(&outcome.graph, &outcome.plan.roots, &target) else {
            eprintln!(
                "nar-tool: {} is not reachable from any root: a collection deletes it",
                show(&target)
            );
            return Ok(ExitCode::from(1));
        };
        let chain: Vec<String> = chain.into_iter().map(show).collect();
        if args.json {
            let doc = serde_json::json!({ "root": root.source, "chain": chain });
            writeln!(out, "{doc}")?;
        } else {
            writeln!(out, "root: {}", root.source)?;
            for (i, p) in chain.iter().enumerate() {
                writeln!(out, "{}{p}", if i == 0 { "" } else { "→ " })?;
            }
        }
    } else {
        print_outcome(
            &mut out,
            &outcome,
            &show,
            opts.dry_run,
            args.json,
            &location.to_string(),
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `--root`, `--roots-dir` and the cache's `gcroots/`.
fn given_roots(
    storage: &dyn StorageWrite,
    args: &GcArgs,
    store_dir: &StoreDir,
) -> Result<Vec<Root>> {
    let mut out = Vec::new();
    for arg in &args.roots {
        let path =
            roots::parse_arg(arg, store_dir).map_err(|e| UsageError(format!("--root: {e}")))?;
        out.push(Root {
            path,
            source: "--root".into(),
        });
    }
    let entries = storage
        .gc_roots()
        .with_context(|| format!("reading gcroots/ of {}", storage.describe()))?;
    for entry in entries {
        out.push(roots::parse_entry("gcroots", &entry, store_dir)?);
    }
    for dir in &args.roots_dirs {
        let entries = nar_tool::host::dir_storage::leases::read_roots_at(dir)
            .with_context(|| format!("--roots-dir {}", dir.display()))?;
        for entry in entries {
            out.push(roots::parse_entry(
                &dir.display().to_string(),
                &entry,
                store_dir,
            )?);
        }
    }
    Ok(out)
}

fn print_list(out: &mut impl Write, items: &[String], json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(items)?)?;
    } else {
        for item in items {
            writeln!(out, "{item}")?;
        }
    }
    Ok(())
}

fn print_roots(
    out: &mut impl Write,
    outcome: &Outcome,
    show: &impl Fn(&nar_tool::store_path::StorePath) -> String,
    json: bool,
) -> Result<()> {
    if json {
        let roots: Vec<_> = outcome
            .plan
            .roots
            .iter()
            .map(|r| {
                serde_json::json!({
                    "path": show(&r.path),
                    "source": r.source,
                    "in_cache": outcome.graph.contains(&r.path),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(roots))?;
    } else {
        for r in &outcome.plan.roots {
            writeln!(out, "{} -> {}", r.source, show(&r.path))?;
        }
    }
    Ok(())
}

fn print_outcome(
    out: &mut impl Write,
    outcome: &Outcome,
    show: &impl Fn(&nar_tool::store_path::StorePath) -> String,
    dry_run: bool,
    json: bool,
    cache: &str,
) -> Result<()> {
    let s = &outcome.summary;
    if json {
        let doc = serde_json::json!({
            "cache": cache,
            "dry_run": dry_run,
            "summary": s,
            "deleted": outcome.deleted.iter().map(show).collect::<Vec<_>>(),
            "spared_by_leases": outcome.spared,
            "missing_roots": outcome.plan.missing_roots.iter().map(|r| {
                serde_json::json!({ "path": show(&r.path), "source": r.source })
            }).collect::<Vec<_>>(),
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    writeln!(
        out,
        "{cache}: {verb} {} paths, {} listings and {} NAR files ({}); kept {} paths ({})",
        s.paths_freed,
        s.listings_freed,
        s.nars_freed,
        human_bytes(s.bytes_freed),
        s.paths_kept,
        human_bytes(s.bytes_kept),
    )?;
    if s.nars_in_grace > 0 {
        writeln!(
            out,
            "{} NAR files nothing names are kept for --grace",
            s.nars_in_grace
        )?;
    }
    if s.unreadable_kept > 0 {
        writeln!(
            out,
            "{} narinfos that cannot be read are kept (run verify)",
            s.unreadable_kept
        )?;
    }
    if outcome.spared > 0 {
        writeln!(out, "{} paths leased meanwhile were spared", outcome.spared)?;
    }
    if s.stopped_at_max_freed {
        writeln!(out, "stopped at --max-freed")?;
    }
    Ok(())
}

/// `gc --store-root`: a Nix store under a root (`host::store::gc`).
fn collect_store(root: &std::path::Path, args: &GcArgs) -> Result<ExitCode> {
    use nar_tool::host::store::{gc, StoreRoot};
    let store_dir = StoreDir::new(args.store_dir.as_deref().unwrap_or("/nix/store"))
        .map_err(|e| UsageError(format!("--store-dir: {e}")))?;
    let store = StoreRoot::new(root, store_dir.clone());
    if !store.has_db() {
        bail!("{}: no Nix store there (no Nix DB)", root.display());
    }
    let looking = args.dry_run || args.print_roots || args.print_live || args.print_dead;
    let proc_dir = (!args.no_runtime_roots).then_some(std::path::Path::new("/proc"));
    let report = gc::collect(&store, looking, proc_dir, |_| {})
        .with_context(|| format!("collecting {}", root.display()))?;
    let mut out = io::stdout().lock();
    if args.print_roots {
        for (path, sources) in &report.roots {
            for s in sources {
                writeln!(out, "{s} -> {}", store_dir.display(path))?;
            }
        }
    } else if args.print_live {
        for p in &report.live {
            writeln!(out, "{}", store_dir.display(p))?;
        }
    } else if args.print_dead || args.dry_run {
        for p in &report.dead {
            writeln!(out, "{}", store_dir.display(p))?;
        }
    } else {
        // As nix-store --gc: what goes on stderr, the summary on stdout.
        for p in &report.deleted {
            eprintln!("deleting '{}'", store_dir.display(p));
        }
        writeln!(out, "{}", report.nix_message())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
