//! `nar-tool verify`: check every file of a binary cache, paths in parallel (`host::verify`).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, Result};

use nar_tool::cache::location::CacheLocation;
use nar_tool::cache::verify::report::{render, Rendering};
use nar_tool::cache::verify::{Report, VerifyOptions};
use nar_tool::signing::PublicKey;
use nar_tool::store_path::StoreDir;

use crate::progress::progress_bar;
use crate::util::jobs_or_cores;

/// Verify a binary cache: every hash, size, signature, reference, URL and file.
/// Exit status: 0 all good (orphan NARs are only warnings), else the sum of 1 (corrupt or
/// missing), 2 (untrusted or bad signatures), 4 (a check could not run)
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The cache: a directory, file://DIR, s3://BUCKET[/PREFIX]?endpoint=…, or http(s)://… (served by `nar-tool serve`, which lists it)
    cache: String,
    /// A trusted public key `name:base64` (repeatable); every path then needs a valid signature by one
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// A file holding trusted public keys, one per line or space-separated (repeatable)
    #[arg(long = "trusted-key-file", value_name = "FILE")]
    trusted_key_files: Vec<PathBuf>,
    /// Do not read NARs: check narinfos, presence and sizes of files, signatures, references only
    #[arg(long)]
    no_contents: bool,
    /// Paths checked at once [default: the number of cores]
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// The store directory the cache must be for
    #[arg(long, default_value = "/nix/store")]
    store_dir: String,
    /// Print the report as one JSON document
    #[arg(long)]
    json: bool,
    /// No progress bar
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let mut keys = Vec::new();
    for k in &args.trusted_keys {
        keys.push(PublicKey::parse(k).with_context(|| format!("--trusted-key {k:?}"))?);
    }
    for f in &args.trusted_key_files {
        let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for k in text.split_whitespace() {
            keys.push(PublicKey::parse(k).with_context(|| format!("{}", f.display()))?);
        }
    }
    let opts = VerifyOptions {
        trusted_keys: keys,
        check_contents: !args.no_contents,
        store_dir: StoreDir::new(&args.store_dir)?,
    };
    let report = verify_cache(
        &args.cache,
        &opts,
        jobs_or_cores(args.jobs),
        !args.quiet && !args.json,
    )?;
    let how = if args.json {
        Rendering::Json
    } else {
        Rendering::Text
    };
    let shown = CacheLocation::parse(&args.cache)?.to_string();
    print_report(&shown, &report, how)?;
    Ok(ExitCode::from(report.exit_code()))
}

/// Checks the cache at `cache` (a directory or URL), `jobs` paths at once, with a progress bar
/// if `progress`.
pub fn verify_cache(
    cache: &str,
    opts: &VerifyOptions,
    jobs: usize,
    progress: bool,
) -> Result<Report> {
    let location = CacheLocation::parse(cache)?;
    let storage = nar_tool::host::open::open_read(&location)
        .with_context(|| format!("opening cache {location}"))?;
    // The bar appears once the narinfos are listed (it knows their number then).
    let bar = OnceLock::new();
    let report = nar_tool::host::verify::verify_cache(
        &storage,
        opts,
        jobs,
        |paths| {
            bar.get_or_init(|| {
                progress_bar(
                    progress,
                    paths as u64,
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} paths (ETA {eta})",
                )
            });
        },
        |_| {
            if let Some(Some(bar)) = bar.get() {
                bar.inc(1);
            }
        },
    )?;
    if let Some(Some(bar)) = bar.get() {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// Prints the report to stdout as the library renders it (text: the problems, one a line, and a
/// summary line).
pub fn print_report(cache: &str, report: &Report, how: Rendering<'_>) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(render(report, cache, how).as_bytes())?;
    out.flush()?;
    Ok(())
}
