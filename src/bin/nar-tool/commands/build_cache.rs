//! `nar-tool build-cache`: build or complete a flat-file binary cache.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};

use nar_tool::cache::location::CacheLocation;
use nar_tool::cache::verify::report::human_bytes;
use nar_tool::compression::Compression;
use nar_tool::host::build::{BuildOptions, MetadataSource};
use nar_tool::store_path::{StoreDir, StorePath};

use crate::progress::BuildProgress;
use crate::util::{jobs_or_cores, read_secret_key};

/// The default `Priority:` of a new cache's nix-cache-info.
pub const DEFAULT_PRIORITY: i64 = 30;

/// Build (or complete) a flat-file binary cache from store paths and their closure
#[derive(Args)]
#[command(group = clap::ArgGroup::new("metadata").multiple(false))]
pub struct BuildCacheArgs {
    /// The cache: a directory (created if missing), file://DIR or s3://BUCKET[/PREFIX]?region=…&endpoint=…&scheme=…&profile=… (credentials as AWS tools find them); an existing cache is completed
    #[arg(long, value_name = "CACHE")]
    to: String,
    /// Physical root of the store: /nix/store/x is read at ROOT/nix/store/x (like local?root=)
    #[arg(long, value_name = "ROOT", default_value = "/")]
    store_root: PathBuf,
    /// The logical store directory
    #[arg(long, default_value = "/nix/store")]
    store_dir: String,
    /// Nix SQLite DB to read metadata from, read-only and lock-free [default: ROOT/nix/var/nix/db/db.sqlite]
    #[arg(long, value_name = "FILE", group = "metadata")]
    db: Option<PathBuf>,
    /// closureInfo `registration` file (the `nix-store --dump-db` format)
    #[arg(long, value_name = "FILE", group = "metadata")]
    registration: Option<PathBuf>,
    /// `nix path-info --json` output
    #[arg(long, value_name = "FILE", group = "metadata")]
    path_info: Option<PathBuf>,
    /// Find references by scanning each NAR for the hash parts of the store paths present
    #[arg(long, group = "metadata")]
    scan_references: bool,
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    compression: CompressionArg,
    /// Compression level: xz 0-9, zstd 1-22, bzip2 1-9 [default: zstd 3 and bzip2 9, as Nix; xz
    /// preset 6 with a 16 MiB dictionary and a shorter match search: ~22 % less CPU than Nix's
    /// preset 6 for about the same size]
    #[arg(long)]
    level: Option<u32>,
    /// Paths compressed at once [default: the number of cores]
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Sign every narinfo with this secret key file (repeatable)
    #[arg(long = "sign", value_name = "SECRET-KEY-FILE")]
    sign: Vec<PathBuf>,
    /// Also write <hashpart>.ls file listings
    #[allow(rustdoc::invalid_html_tags)] // clap's help text, not HTML
    #[arg(long)]
    nar_listing: bool,
    /// Only the given paths, not their closure
    #[arg(long)]
    no_closure: bool,
    /// Rewrite paths whose narinfo already exists
    #[arg(long)]
    force: bool,
    /// `Priority:` in nix-cache-info (lower wins; cache.nixos.org has 40)
    #[arg(long, default_value_t = DEFAULT_PRIORITY)]
    priority: i64,
    /// Read more store paths, one per line, from FILE (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    paths_from: Option<String>,
    /// No progress bar or summary
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Store paths (/nix/store/…-name, a path below one, or a base name)
    store_paths: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Xz,
    Zstd,
    Bzip2,
    None,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Bzip2 => Compression::Bzip2,
            CompressionArg::None => Compression::None,
        }
    }
}

pub fn run(args: BuildCacheArgs) -> Result<ExitCode> {
    let store_dir = StoreDir::new(&args.store_dir)?;
    let mut names = args.store_paths.clone();
    if let Some(from) = &args.paths_from {
        let text = if from == "-" {
            io::read_to_string(io::stdin().lock())?
        } else {
            fs::read_to_string(from).with_context(|| format!("reading {from}"))?
        };
        names.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if names.is_empty() {
        bail!("no store paths given (as arguments or with --paths-from)");
    }
    let physical_store = args
        .store_root
        .join(store_dir.as_str().trim_start_matches('/'));
    let paths = names
        .iter()
        .map(|n| parse_store_path_arg(n, &store_dir, &physical_store))
        .collect::<Result<Vec<_>>>()?;
    let metadata = if let Some(db) = args.db {
        MetadataSource::Db(db)
    } else if let Some(r) = args.registration {
        MetadataSource::Registration(r)
    } else if let Some(p) = args.path_info {
        MetadataSource::PathInfoJson(p)
    } else if args.scan_references {
        MetadataSource::Scan
    } else {
        MetadataSource::Db(args.store_root.join("nix/var/nix/db/db.sqlite"))
    };
    let keys = args
        .sign
        .iter()
        .map(|k| read_secret_key(k))
        .collect::<Result<Vec<_>>>()?;
    if let Some(level) = args.level {
        nar_tool::host::codec::check_level(args.compression.into(), level)
            .map_err(|e| anyhow!(e))?;
    }
    let jobs = jobs_or_cores(args.jobs);
    let location = CacheLocation::parse(&args.to)?;
    if let CacheLocation::S3(s3) = &location {
        if !s3.settings.is_empty() {
            let names: Vec<&str> = s3.settings.keys().map(String::as_str).collect();
            eprintln!(
                "note: Nix's store settings in the URL ({}) are not used by build-cache: give them as options (--compression, --sign, --nar-listing)",
                names.join(", ")
            );
        }
    }
    let shown = location.to_string();
    let opts = BuildOptions {
        to: PathBuf::from(&shown),
        store_root: args.store_root,
        store_dir,
        metadata,
        compression: args.compression.into(),
        level: args.level,
        jobs,
        keys,
        nar_listing: args.nar_listing,
        closure: !args.no_closure,
        force: args.force,
        priority: args.priority,
        want_mass_query: true,
        paths,
    };
    let mut bar = BuildProgress::new(!args.quiet && !args.json);
    let summary = nar_tool::host::open::open_write(&location)
        .map_err(|e| anyhow!("cannot open the cache: {e}"))
        .and_then(|storage| {
            nar_tool::host::build::build_cache_into(&*storage, &opts, |p| bar.update(p))
                .map_err(anyhow::Error::from)
        });
    bar.finish();
    let summary = summary.with_context(|| {
        format!(
            "building cache {shown} (what was published so far is valid; run again to complete it)"
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        eprintln!(
            "{}: {} paths ({} written, {} already there, {} NARs deduplicated), {} of NAR into {} of {} files, in {:.2}s",
            shown,
            summary.paths,
            summary.written,
            summary.skipped,
            summary.deduplicated,
            human_bytes(summary.nar_bytes),
            human_bytes(summary.file_bytes),
            Compression::from(args.compression),
            summary.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A store path from the command line: absolute (possibly below a store path, or under the
/// physical store), or a base name.
fn parse_store_path_arg(
    arg: &str,
    store_dir: &StoreDir,
    physical_store: &Path,
) -> Result<StorePath> {
    if let Ok((p, _)) = store_dir.parse_path_prefix(arg) {
        return Ok(p);
    }
    if let Ok(rest) = Path::new(arg).strip_prefix(physical_store) {
        if let Some(first) = rest.components().next() {
            return Ok(StorePath::from_base_name(
                &first.as_os_str().to_string_lossy(),
            )?);
        }
    }
    if !arg.contains('/') {
        if let Ok(p) = StorePath::from_base_name(arg) {
            return Ok(p);
        }
    }
    bail!("{arg:?} is not a path in the store directory {store_dir}")
}
