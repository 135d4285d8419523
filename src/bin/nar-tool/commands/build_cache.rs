//! `nar-tool build-cache`: build or complete a flat-file binary cache.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use nar_tool::cache::location::CacheLocation;
use nar_tool::cache::verify::report::human_bytes;
use nar_tool::compression::Compression;
use nar_tool::host::build::{BuildError, BuildOptions, MetadataSource, DEFAULT_XZ_MEMORY};
use nar_tool::store_path::{StoreDir, StorePath};

use crate::args::{cache_location, UsageError};
use crate::policy::PolicyArgs;
use crate::progress::BuildProgress;
use crate::util::{jobs_for, read_secret_key};

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
    /// The logical store directory (the prefix of the store paths)
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
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
    /// How NAR files are compressed (the narinfo's `Compression:`)
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    compression: CompressionArg,
    /// Compression level: xz 0-9, zstd 1-22, bzip2 1-9 [default: zstd 3 and bzip2 9, as Nix; xz
    /// preset 6 with a 16 MiB dictionary and a shorter match search: ~22 % less CPU than Nix's
    /// preset 6 for about the same size]
    #[arg(long, value_name = "N")]
    level: Option<u32>,
    /// The memory the xz compressors may take together, in MiB: a path gets as many threads as
    /// fit, and waits while not even one does [default: 1024]
    #[arg(long, value_name = "MIB")]
    xz_memory: Option<u64>,
    /// Paths compressed at once [default: the number of cores; for a bucket, 4 per core and at least 16]
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Sign every narinfo with the key in this secret key file, as `nar-tool key generate
    /// --secret` or `nix-store --generate-binary-cache-key` writes it (repeatable)
    #[arg(
        long = "secret-key-file",
        alias = "sign",
        value_name = "SECRET-KEY-FILE"
    )]
    secret_key_files: Vec<PathBuf>,
    /// Also write <hashpart>.ls file listings
    #[allow(rustdoc::invalid_html_tags)] // clap's help text, not HTML
    #[arg(long)]
    nar_listing: bool,
    /// Only the given paths, not their closure
    #[arg(long)]
    no_closure: bool,
    /// Leave the cache's lookup index (nar-tool-index/) as it is; by default the paths built
    /// are added to it, and a cache without one gets one, made from all its narinfos
    #[arg(long)]
    no_index: bool,
    /// Rewrite paths whose narinfo already exists
    #[arg(long)]
    force: bool,
    /// `Priority:` in nix-cache-info (lower wins; cache.nixos.org has 40)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PRIORITY)]
    priority: i64,
    /// Read more store paths, one per line, from FILE (`-` for stdin); like the arguments, a
    /// line may be a symlink into the store (`./result`)
    #[arg(long, value_name = "FILE")]
    paths_from: Option<String>,
    /// No progress bar or summary
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    // Checked of each given path (not of the rest of the closure) before anything is published.
    #[command(flatten)]
    policy: PolicyArgs,
    /// Also name each path left out because an upstream serves it
    #[arg(long, short = 'v')]
    verbose: bool,
    #[command(flatten)]
    upstream: crate::upstream::UpstreamArgs,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
    /// Store paths to put in the cache with their closure: /nix/store/…-name, a path below one, a
    /// base name, or a symlink into the store such as nix-build's ./result
    #[arg(value_name = "STORE-PATH", required_unless_present = "paths_from")]
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
    let location = cache_location(&args.to)?;
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
        // The arguments were right (clap insists on paths or --paths-from): the list was empty.
        bail!("no store paths given (the --paths-from list has none)");
    }
    let physical_store = args
        .store_root
        .join(store_dir.as_str().trim_start_matches('/'));
    let paths = names
        .iter()
        .map(|n| store_path_arg(n, &store_dir, &physical_store))
        .collect::<Result<Vec<_>>>()?;
    let policy = args
        .policy
        .policy(|p| store_path_arg(p, &store_dir, &physical_store))?;
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
        .secret_key_files
        .iter()
        .map(|k| read_secret_key(k))
        .collect::<Result<Vec<_>>>()?;
    if let Some(level) = args.level {
        nar_tool::host::codec::check_level(args.compression.into(), level).map_err(UsageError)?;
    }
    let xz_memory = match args.xz_memory {
        Some(0) => return Err(UsageError("--xz-memory must be at least 1 (MiB)".into()).into()),
        Some(mib) => mib.saturating_mul(1 << 20),
        None => DEFAULT_XZ_MEMORY,
    };
    let jobs = jobs_for(args.jobs, &location);
    args.remote.configure();
    let upstream = args.upstream.open(&store_dir)?;
    if let CacheLocation::S3(s3) = &location {
        if !s3.settings.is_empty() {
            let names: Vec<&str> = s3.settings.keys().map(String::as_str).collect();
            eprintln!(
                "note: Nix's store settings in the URL ({}) are not used by build-cache: give them as options (--compression, --secret-key-file, --nar-listing)",
                names.join(", ")
            );
        }
    }
    let shown = location.to_string();
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            // A second Ctrl-C: stop now (temporaries are cleaned by the next run).
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
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
        xz_memory,
        interrupt: Some(interrupt),
        policy,
        index: !args.no_index,
    };
    let mut bar = BuildProgress::new(!args.quiet && !args.json);
    let storage = nar_tool::host::open::open_write(&location);
    let summary = match &storage {
        Ok(storage) => {
            nar_tool::host::build::build_cache_upstream(&**storage, &opts, &upstream, |p| {
                bar.update(p)
            })
        }
        Err(e) => Err(BuildError::Input(format!("cannot open the cache: {e}"))),
    };
    bar.finish();
    let summary = match summary {
        Ok(summary) => summary,
        Err(BuildError::Interrupted) => {
            eprintln!(
                "nar-tool: interrupted; run again to complete it (what was published so far is valid)"
            );
            return Ok(ExitCode::from(130));
        }
        Err(e) if e.rerun_may_complete() => {
            return Err(e).with_context(|| {
                format!(
                    "building cache {shown} (what was published so far is valid; run again to complete it)"
                )
            })
        }
        Err(e) => return Err(e).with_context(|| format!("building cache {shown}")),
    };
    for w in &summary.upstream_warnings {
        eprintln!("nar-tool: warning: kept {w}");
    }
    if args.verbose {
        for p in &summary.upstream_paths {
            eprintln!("left out (served upstream): {p}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        let upstream = match upstream.is_empty() {
            true => String::new(),
            false => format!(", {} left out as served upstream", summary.upstream),
        };
        eprintln!(
            "{}: {} paths ({} written, {} already there{upstream}, {} NARs deduplicated), {} of NAR into {} of {} files, in {:.2}s",
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

/// How many symlinks are followed from an argument to the store (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// A store path from the command line: absolute (possibly below a store path, or under the
/// physical store), a base name, or, as `nix copy` takes them, a symlink (or a chain of them)
/// leading into the store, such as nix-build's `./result`. Nothing else is followed.
fn store_path_arg(arg: &str, store_dir: &StoreDir, physical_store: &Path) -> Result<StorePath> {
    let mut path = PathBuf::from(arg);
    for _ in 0..=MAX_LINKS {
        if let Some(p) = in_store(&path, store_dir, physical_store) {
            return p;
        }
        let link = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => fs::read_link(&path)
                .with_context(|| format!("{arg:?}: reading the symlink {}", path.display()))?,
            _ if path.as_os_str() == arg => {
                if !arg.contains('/') {
                    if let Ok(p) = StorePath::from_base_name(arg) {
                        return Ok(p);
                    }
                }
                bail!("{arg:?} is not a path in the store directory {store_dir}, nor a symlink into it")
            }
            _ => bail!(
                "{arg:?} leads to {}, which is not in the store directory {store_dir}",
                path.display()
            ),
        };
        path = path.parent().unwrap_or(Path::new("")).join(link);
    }
    bail!("{arg:?}: more than {MAX_LINKS} symlinks before the store directory {store_dir}")
}

/// The store path `path` is (or is below), logically or under the physical store.
fn in_store(path: &Path, store_dir: &StoreDir, physical_store: &Path) -> Option<Result<StorePath>> {
    let text = path.to_str()?;
    if let Ok((p, _)) = store_dir.parse_path_prefix(text) {
        return Some(Ok(p));
    }
    let rest = path.strip_prefix(physical_store).ok()?;
    let first = rest.components().next()?;
    Some(StorePath::from_base_name(&first.as_os_str().to_string_lossy()).map_err(Into::into))
}
