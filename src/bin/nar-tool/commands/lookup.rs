//! `nar-tool lookup`: store paths by hash part, store path or name, from a cache's lookup index
//! (`nar_tool::cache::index`), or from a store's DB as Nix's `queryPathFromHashPart` does (one
//! indexed query each; the store directory is not read).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::cache::index::reader::{PathRecord, Step};
use nar_tool::cache::index::Query;
use nar_tool::cache::verify::report::human_bytes;
use nar_tool::host::db::NixDb;
use nar_tool::host::store::StoreRoot;
use nar_tool::store_path::StoreDir;

use super::index_source::CacheIndex;
use crate::args::{cache_location, UsageError};

/// Find store paths in a cache by hash part, store path or name, from its lookup index (or its
/// narinfos where it has none); or, with --store-root, the valid store path of each hash part
/// in a store's DB. Exit 1 if a query finds nothing
#[derive(clap::Args)]
#[command(
    override_usage = "nar-tool lookup [OPTIONS] CACHE QUERY...\n       nar-tool lookup --store-root ROOT HASH-PART|STORE-PATH..."
)]
pub struct LookupArgs {
    /// The store's root (its DB is ROOT/nix/var/nix/db/db.sqlite), instead of a cache
    #[arg(long, value_name = "ROOT")]
    store_root: Option<PathBuf>,
    /// The store directory [default: the cache's nix-cache-info StoreDir, or /nix/store]
    #[arg(long, value_name = "DIR")]
    store_dir: Option<String>,
    /// Print each path's referrers (the paths of the cache that reference it) instead of it
    #[arg(long, conflicts_with = "store_root")]
    referrers: bool,
    /// Print each path's NAR and file sizes and references too
    #[arg(long, short = 'l', conflicts_with = "store_root")]
    long: bool,
    /// Print one JSON array of the paths found (store path, name, sizes, references; referrers
    /// with --referrers)
    #[arg(long, conflicts_with = "store_root")]
    json: bool,
    /// Narinfos read at once when the cache has no index
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8)]
    jobs: usize,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
    /// CACHE (a directory, file://DIR, s3://BUCKET[/PREFIX]?…, http(s)://…), then the queries:
    /// hash parts, store paths (or base names), or names (matched by prefix, then anywhere)
    #[arg(value_name = "CACHE QUERY", required = true)]
    args: Vec<String>,
}

pub fn run(args: LookupArgs) -> Result<ExitCode> {
    args.remote.configure();
    if let Some(root) = &args.store_root {
        let store_dir = StoreDir::new(args.store_dir.as_deref().unwrap_or("/nix/store"))?;
        return lookup_in_store(root, &store_dir, &args.args);
    }
    let Some((cache, queries)) = args.args.split_first().filter(|(_, q)| !q.is_empty()) else {
        return Err(UsageError("give a CACHE and at least one QUERY".into()).into());
    };
    if args.jobs == 0 {
        return Err(UsageError("--jobs 0: at least one".into()).into());
    }
    let location = cache_location(cache)?;
    let storage = nar_tool::host::open::open_read(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let store_dir = crate::util::cache_store_dir(&*storage, args.store_dir.as_deref())?;
    let mut index = CacheIndex::open(storage, &store_dir, args.jobs)?;
    let mut found: Vec<PathRecord> = Vec::new();
    let mut missing = 0;
    for text in queries {
        let ids = match Query::parse(index.store_dir(), text) {
            Query::HashPart(hash) => index.answer(|r| r.find(&hash))?.into_iter().collect(),
            Query::Name(name) => index.answer(|r| r.search_name(&name))?,
        };
        let mut any = false;
        for id in ids {
            let record = index.answer(|r| r.record(id, args.referrers))??;
            // A reference without a narinfo is not in the cache.
            if record.present {
                any = true;
                found.push(record);
            }
        }
        if !any {
            eprintln!("nar-tool: {text}: not in {location}");
            missing += 1;
        }
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &found)?;
        writeln!(out)?;
    } else {
        for record in &found {
            print_record(&mut out, record, &args)?;
        }
    }
    out.flush()?;
    // The shards read are left for the process's exit to free: freeing their entries one by
    // one took longer than a lookup.
    std::mem::forget(index);
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_record(out: &mut impl Write, record: &PathRecord, args: &LookupArgs) -> io::Result<()> {
    if args.referrers {
        for r in record.referrers.iter().flatten() {
            writeln!(out, "{r}")?;
        }
        return Ok(());
    }
    writeln!(out, "{}", record.store_path)?;
    if args.long {
        let size = |s: Option<u64>| s.map_or("unknown".into(), human_bytes);
        writeln!(out, "  NAR size:  {}", size(record.nar_size))?;
        writeln!(out, "  file size: {}", size(record.file_size))?;
        for r in &record.references {
            writeln!(out, "  reference: {r}")?;
        }
    }
    Ok(())
}

fn lookup_in_store(
    root: &std::path::Path,
    store_dir: &StoreDir,
    keys: &[String],
) -> Result<ExitCode> {
    let mut hash_parts = Vec::new();
    for k in keys {
        match Query::parse(store_dir, k) {
            Query::HashPart(hash) => hash_parts.push((k, hash)),
            Query::Name(_) => {
                return Err(UsageError(format!(
                    "{k:?}: not a hash part (32 nix-base32 characters) or a store path in {}",
                    store_dir.as_str()
                ))
                .into())
            }
        }
    }
    let root = StoreRoot::new(root, store_dir.clone());
    let db = NixDb::open_live(&root.db_file(), store_dir)?;
    let mut missing = 0;
    for (k, hash) in hash_parts {
        match db.path_from_hash_part(&hash)? {
            Some(p) => println!("{}", store_dir.display(&p)),
            None => {
                eprintln!("nar-tool: {k}: no valid path with hash part {hash}");
                missing += 1;
            }
        }
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The entry of `text` (a store path, base name or hash part) in `index`, or why not.
pub fn find_path(index: &mut CacheIndex, text: &str, what: &str) -> Result<u32> {
    let hash = match Query::parse(index.store_dir(), text) {
        Query::HashPart(hash) => hash,
        Query::Name(_) => {
            return Err(UsageError(format!(
                "{what} {text:?}: not a store path, base name or hash part"
            ))
            .into())
        }
    };
    match index.answer(|r| match r.find(&hash) {
        Step::Done(Some(id)) => match r.entry(id) {
            Ok(e) => Step::Done(Some((id, e.nar_size.is_some()))),
            Err(n) => Step::Need([n].into()),
        },
        Step::Done(None) => Step::Done(None),
        Step::Need(n) => Step::Need(n),
    })? {
        Some((id, true)) => Ok(id),
        _ => anyhow::bail!("{what} {text}: not in the cache"),
    }
}
