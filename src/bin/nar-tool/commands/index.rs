//! `nar-tool index`: writes a cache's lookup index anew from its narinfos
//! (`nar_tool::cache::index`).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use nar_tool::cache::gc::run::inventory;
use nar_tool::cache::index::publish::{self, content_of};

use crate::args::{cache_location, UsageError};

/// How old a shard no index names must be before it is deleted (a live writer's may be young).
const SWEEP_AGE_SECS: u64 = 3600;

/// Write a cache's lookup index (nar-tool-index/: hash part → store path, sizes, references and
/// referrers) anew from its narinfos, for `lookup`, `why-depends` and the inspector.
/// `build-cache` and `gc` keep it up to date once it exists; this makes it for a cache built
/// otherwise, or repairs it. Readers see the old index or the new one, never a mix
#[derive(clap::Args)]
pub struct IndexArgs {
    /// The cache: a directory, file://DIR, or s3://BUCKET[/PREFIX]?endpoint=…
    #[arg(value_name = "CACHE")]
    cache: String,
    /// Change nothing: exit 1 if the index is missing or differs from the narinfos
    #[arg(long)]
    check: bool,
    /// The store directory [default: the cache's nix-cache-info StoreDir, or /nix/store]
    #[arg(long, value_name = "DIR")]
    store_dir: Option<String>,
    /// Narinfos read at once
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8)]
    jobs: usize,
}

pub fn run(args: IndexArgs) -> Result<ExitCode> {
    if args.jobs == 0 {
        return Err(UsageError("--jobs 0: at least one".into()).into());
    }
    let location = cache_location(&args.cache)?;
    if let nar_tool::cache::location::CacheLocation::Directory(dir) = &location {
        if !std::path::Path::new(dir).is_dir() {
            return Err(UsageError(format!("{dir}: no such cache directory")).into());
        }
    }
    let storage = nar_tool::host::open::open_write(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let store_dir = crate::util::cache_store_dir(&*storage, args.store_dir.as_deref())?;
    let base = publish::read_current(&*storage);
    let inventory = inventory(&*storage, args.jobs)
        .with_context(|| format!("reading the narinfos of {location}"))?;
    for (hash, why) in &inventory.unreadable {
        eprintln!("nar-tool: warning: {hash}.narinfo is left out: {why}");
    }
    let listed = content_of(&store_dir, &inventory);
    let mut out = io::stdout().lock();
    if args.check {
        let same = matches!(&base, Ok(Some(current)) if current.content == listed);
        match &base {
            Ok(None) => writeln!(out, "{location} has no index")?,
            Err(e) => writeln!(out, "the index of {location} is not valid: {e}")?,
            Ok(Some(c)) if !same => {
                let indexed: BTreeSet<_> = c.content.paths.keys().collect();
                let there: BTreeSet<_> = listed.paths.keys().collect();
                writeln!(
                    out,
                    "the index of {location} differs from its narinfos: {} paths only in the index, {} only in narinfos, {} described differently",
                    indexed.difference(&there).count(),
                    there.difference(&indexed).count(),
                    there
                        .intersection(&indexed)
                        .filter(|p| c.content.paths.get(**p) != listed.paths.get(**p))
                        .count()
                )?;
            }
            Ok(Some(_)) => writeln!(
                out,
                "the index of {location} matches its {} narinfos",
                listed.paths.len()
            )?,
        }
        return Ok(if same {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let base = base.ok().flatten();
    let done = publish::reconcile(
        &*storage,
        &listed,
        base.as_ref().map(|b| &b.content),
        &BTreeSet::new(),
    )
    .with_context(|| format!("writing the index of {location}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let swept = publish::sweep(&*storage, now, SWEEP_AGE_SECS)
        .with_context(|| format!("removing old index shards of {location}"))?;
    writeln!(
        out,
        "index of {location}: {} paths{}{}",
        done.paths,
        if done.changed { "" } else { " (unchanged)" },
        if swept > 0 {
            format!("; {swept} abandoned shards removed")
        } else {
            String::new()
        }
    )?;
    Ok(ExitCode::SUCCESS)
}
