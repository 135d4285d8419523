//! `nar-tool fetch`: a closure from a cache into a store root, without Nix
//! (`host::store::fetch`), with Nix's registration file, DB and `.links` dedup on request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use nar_tool::cache::metadata::format_registration;
use nar_tool::cache::verify::VerifyOptions;
use nar_tool::host::atomic::write_atomic;
use nar_tool::host::store::fetch::{fetch, FetchOptions, Outcome};
use nar_tool::host::store::StoreRoot;
use nar_tool::store_path::{StoreDir, StorePath};

use crate::args::{cache_location, TrustedKeyArgs, UsageError};
use crate::commands::optimise::optimise_paths;
use crate::util::jobs_for;

/// Fetch store paths and their closure from a binary cache into a store under ROOT, checking
/// every signature and hash first (paths appear whole or not at all, as Nix gives them)
#[derive(clap::Args)]
pub struct FetchArgs {
    /// The cache: a directory, file://DIR, s3://BUCKET[/PREFIX]?…, or http(s)://…
    #[arg(long, value_name = "CACHE")]
    from: String,
    /// The store's root: paths go to ROOT/nix/store (like Nix's local?root=ROOT)
    #[arg(long, value_name = "ROOT")]
    store_root: PathBuf,
    /// The logical store directory
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
    #[command(flatten)]
    trusted: TrustedKeyArgs,
    /// Fetch paths without checking signatures (every hash is still checked)
    #[arg(long)]
    no_check_sigs: bool,
    /// Only the paths named, not their references
    #[arg(long)]
    no_closure: bool,
    /// Deduplicate the new paths' files through ROOT/nix/store/.links, as `nix-store --optimise`
    #[arg(long)]
    optimise: bool,
    /// Write the `nix-store --load-db` registration of the closure to FILE
    #[arg(long, value_name = "FILE")]
    registration: Option<PathBuf>,
    /// Register the paths in Nix's DB ROOT/nix/var/nix/db/db.sqlite (created as Nix 2.8 does)
    #[arg(long)]
    write_db: bool,
    /// Paths fetched at once [default: the number of cores; for a bucket or an HTTP cache, 4 per core and at least 16]
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// No line per path on stderr
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
    /// The store paths (STORE-DIR/HASH-NAME)
    #[arg(value_name = "STORE-PATH", required = true)]
    paths: Vec<String>,
}

pub fn run(args: FetchArgs) -> Result<ExitCode> {
    args.remote.configure();
    let location = cache_location(&args.from)?;
    let store_dir = StoreDir::new(&args.store_dir)?;
    let trusted_keys = args.trusted.load()?;
    if trusted_keys.is_empty() && !args.no_check_sigs {
        return Err(UsageError(
            "no trusted key: give --trusted-key or --trusted-key-file, or --no-check-sigs to \
             fetch unsigned paths"
                .into(),
        )
        .into());
    }
    let mut paths = Vec::new();
    for p in &args.paths {
        let path: StorePath = store_dir
            .parse_path(p)
            .map_err(|e| UsageError(format!("{p}: {e}")))?;
        paths.push(path);
    }
    let root = StoreRoot::new(&args.store_root, store_dir.clone());
    let opts = FetchOptions {
        verify: VerifyOptions {
            trusted_keys: if args.no_check_sigs {
                Vec::new()
            } else {
                trusted_keys
            },
            check_contents: true,
            store_dir: store_dir.clone(),
            ..VerifyOptions::default()
        },
        closure: !args.no_closure,
        jobs: jobs_for(args.jobs, &location),
        write_db: args.write_db,
    };
    let storage = nar_tool::host::open::open_read(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let quiet = args.quiet;
    let report = fetch(&storage, &root, &paths, &opts, |path, outcome| {
        if quiet {
            return;
        }
        let shown = store_dir.display(path);
        match outcome {
            Outcome::Fetched { .. } => eprintln!("fetched {shown}"),
            Outcome::Adopted => eprintln!("registered {shown} (present, contents checked)"),
            Outcome::AlreadyValid | Outcome::Failed(_) => {}
        }
    })
    .with_context(|| format!("fetching into {}", args.store_root.display()))?;
    if let Some(file) = &args.registration {
        let text =
            format_registration(&store_dir, &report.registrable).map_err(anyhow::Error::msg)?;
        write_atomic(file, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    if args.optimise {
        let stats = optimise_paths(&root, &report.new_paths(), false, opts.jobs)?;
        eprintln!("{}", stats.nix_message());
    }
    let failures: Vec<_> = report.failures().collect();
    let fetched = report
        .outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Fetched { .. }))
        .count();
    let already = report
        .outcomes
        .values()
        .filter(|o| matches!(o, Outcome::AlreadyValid))
        .count();
    if !quiet {
        eprintln!(
            "{fetched} paths fetched, {already} already valid, {} failed{}",
            failures.len(),
            if args.write_db {
                format!(", {} registered in the DB", report.registered)
            } else {
                String::new()
            }
        );
    }
    if !failures.is_empty() {
        for (path, why) in &failures {
            eprintln!("nar-tool: error: {}: {why}", store_dir.display(path));
        }
        bail!(
            "{} of {} paths could not be fetched",
            failures.len(),
            report.outcomes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
