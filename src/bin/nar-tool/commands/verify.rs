//! `nar-tool verify`: check every file of a binary cache, paths in parallel (`host::verify`).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::cache::verify::report::{render, Rendering};
use nar_tool::cache::verify::{PolicyOptions, Report, VerifyOptions, DEFAULT_MAX_PROBLEMS};
use nar_tool::host::upstream::Upstreams;
use nar_tool::store_path::{StoreDir, StorePath};

use crate::args::{cache_location, TrustedKeyArgs, UsageError};
use crate::policy::PolicyArgs;
use crate::progress::VerifyProgress;
use crate::util::jobs_for;

/// Verify a binary cache: every hash, size, signature, reference, URL and file, and a reference
/// policy if one is given.
/// Exit status: 0 all good (orphan NARs are only warnings), else the sum of 1 (corrupt or
/// missing), 2 (untrusted or bad signatures), 4 (a check could not run), 8 (a reference policy
/// broken)
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The cache: a directory, file://DIR, s3://BUCKET[/PREFIX]?endpoint=…, or http(s)://… (served by `nar-tool serve`, which lists it)
    #[arg(value_name = "CACHE")]
    cache: String,
    #[command(flatten)]
    trusted: TrustedKeyArgs,
    /// Do not read NARs: check narinfos, presence and sizes of files, signatures, references only
    #[arg(long)]
    no_contents: bool,
    /// Paths checked at once [default: the number of cores; for a bucket or an HTTP cache, 4 per core and at least 16]
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// The store directory the cache must be for
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
    /// Print the report as one JSON document
    #[arg(long)]
    json: bool,
    /// No progress bar
    #[arg(long, short = 'q')]
    quiet: bool,
    /// List at most N problems, the first in the report's order; the others are counted by kind
    /// (memory stays bounded however many there are). 0: list every one
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PROBLEMS)]
    max_problems: usize,
    #[command(flatten)]
    upstream: crate::upstream::UpstreamArgs,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// The store path the reference policy applies to (repeatable) [default: the cache's roots,
    /// the paths no other path in it refers to]
    #[arg(long, value_name = "STORE-PATH", help_heading = "Reference policy")]
    policy_path: Vec<String>,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    args.remote.configure();
    let location = cache_location(&args.cache)?;
    let shown = location.to_string();
    let store_dir = StoreDir::new(&args.store_dir)?;
    let path_arg = |p: &str| -> Result<StorePath> {
        match store_dir.parse_path(p) {
            Ok(path) => Ok(path),
            Err(_) if !p.contains('/') => Ok(StorePath::from_base_name(p)?),
            Err(e) => Err(e.into()),
        }
    };
    let policy = PolicyOptions {
        policy: args.policy.policy(path_arg)?,
        paths: args
            .policy_path
            .iter()
            .map(|p| path_arg(p).map_err(|e| UsageError(format!("--policy-path {p:?}: {e:#}"))))
            .collect::<Result<_, _>>()?,
    };
    if policy.policy.is_empty() && !policy.paths.is_empty() {
        return Err(UsageError(
            "--policy-path names the paths a reference policy applies to: give one (--allowed-references, --allowed-requisites, --disallowed-references or --disallowed-requisites)".into(),
        )
        .into());
    }
    let opts = VerifyOptions {
        trusted_keys: args.trusted.load()?,
        check_contents: !args.no_contents,
        store_dir,
        policy,
        max_problems: args.max_problems,
    };
    let upstream = args.upstream.open(&opts.store_dir)?;
    let report = verify_cache(
        &args.cache,
        &opts,
        &upstream,
        jobs_for(args.jobs, &location),
        !args.quiet && !args.json,
    )?;
    let how = if args.json {
        Rendering::Json
    } else {
        Rendering::Text
    };
    print_report(&shown, &report, how)?;
    if opts.trusted_keys.is_empty() {
        eprintln!(
            "nar-tool: note: signatures were not checked (no --trusted-key or --trusted-key-file given)"
        );
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Checks the cache at `cache` (a directory or URL), `jobs` paths at once, with a progress bar
/// if `progress` (in bytes read when NARs are read, else in paths).
pub fn verify_cache(
    cache: &str,
    opts: &VerifyOptions,
    upstream: &Upstreams,
    jobs: usize,
    progress: bool,
) -> Result<Report> {
    let location = cache_location(cache)?;
    let storage = nar_tool::host::open::open_read(&location)
        .with_context(|| format!("opening cache {location}"))?;
    let bar = VerifyProgress::new(progress, opts.check_contents);
    let counted = bar.count_reads(&storage);
    let report = nar_tool::host::verify::verify_cache_upstream_with(
        &counted,
        opts,
        jobs,
        upstream,
        |paths| bar.listed(&storage, paths),
        |_| bar.path_done(),
    )?;
    bar.finish();
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
