//! `nar-tool why-depends`: why a path of a cache depends on another, through the cache's lookup
//! index (`nix why-depends` for a cache).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::index_source::CacheIndex;
use super::lookup::find_path;
use crate::args::{cache_location, UsageError};

/// Print the shortest chain of references by which FROM depends on TO in a cache, as
/// `nix why-depends` does for a store (from the cache's lookup index, or its narinfos where it
/// has none). Exit 1 if TO is not in FROM's closure
#[derive(clap::Args)]
pub struct WhyDependsArgs {
    /// The cache: a directory, file://DIR, s3://BUCKET[/PREFIX]?…, or http(s)://…
    #[arg(value_name = "CACHE")]
    cache: String,
    /// The dependent: a store path, base name or hash part
    #[arg(value_name = "FROM")]
    from: String,
    /// The dependency: a store path, base name or hash part
    #[arg(value_name = "TO")]
    to: String,
    /// The store directory [default: the cache's nix-cache-info StoreDir, or /nix/store]
    #[arg(long, value_name = "DIR")]
    store_dir: Option<String>,
    /// Print the chain as a JSON array of store paths
    #[arg(long)]
    json: bool,
    /// Narinfos read at once when the cache has no index
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8)]
    jobs: usize,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
}

pub fn run(args: WhyDependsArgs) -> Result<ExitCode> {
    args.remote.configure();
    if args.jobs == 0 {
        return Err(UsageError("--jobs 0: at least one".into()).into());
    }
    let location = cache_location(&args.cache)?;
    let storage = nar_tool::host::open::open_read(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let store_dir = crate::util::cache_store_dir(&*storage, args.store_dir.as_deref())?;
    let mut index = CacheIndex::open(storage, &store_dir, args.jobs)?;
    let from = find_path(&mut index, &args.from, "FROM")?;
    let to = find_path(&mut index, &args.to, "TO")?;
    let graph = index.answer(|r| r.closure_graph(&[from]))?;
    let path_of = |id| index.reader().entry(id).map(|e| e.path.clone());
    let (Ok(from_path), Ok(to_path)) = (path_of(from), path_of(to)) else {
        unreachable!("found entries stay loaded");
    };
    let show = |p: &nar_tool::store_path::StorePath| index.store_dir().display(p);
    let Some(chain) = graph.why_depends(&from_path, &to_path) else {
        eprintln!(
            "nar-tool: '{}' does not depend on '{}'",
            show(&from_path),
            show(&to_path)
        );
        return Ok(ExitCode::from(1));
    };
    let chain: Vec<String> = chain.into_iter().map(show).collect();
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &chain)?;
        writeln!(out)?;
    } else {
        for (depth, path) in chain.iter().enumerate() {
            match depth {
                0 => writeln!(out, "{path}")?,
                _ => writeln!(out, "{}└───{path}", "    ".repeat(depth - 1))?,
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
