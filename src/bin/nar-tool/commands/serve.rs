//! `nar-tool serve`: serve a cache directory over HTTP until Ctrl-C.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use nar_tool::cache::location::CacheLocation;
use nar_tool::host::serve::{activation, has_embedded_inspector, Limits, ServeOptions, Served};

use crate::args::cache_location;

/// Serve a cache over HTTP (a substituter for Nix; the inspector at /_nar-tool/); Ctrl-C stops
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The cache, served at the root: a directory, file://DIR, s3://BUCKET[/PREFIX]?endpoint=… (a private bucket, streamed through) or http(s)://… (proxied)
    #[arg(
        value_name = "CACHE",
        required_unless_present = "named",
        conflicts_with = "named"
    )]
    cache: Option<String>,
    /// A cache served under /NAME/ (as CACHE); repeat for several
    #[arg(long = "cache", value_name = "NAME=CACHE", id = "named")]
    named: Vec<String>,
    /// Only those the file names may read, each the caches listed for it (HTTP Basic, as Nix sends from its netrc-file, or Bearer NAME.SECRET); see `nar-tool auth`
    #[arg(long, value_name = "FILE")]
    auth: Option<PathBuf>,
    /// The address and port to listen on (0.0.0.0:8080 for every interface; port 0 picks a
    /// free one), or unix:PATH for a Unix socket (for a reverse proxy; its mode follows the
    /// umask); not used when systemd hands the sockets in (LISTEN_FDS: socket activation)
    #[arg(
        long,
        value_name = "ADDR:PORT|unix:PATH",
        default_value = "127.0.0.1:8080"
    )]
    listen: String,
    /// Worker threads of the HTTP server (tokio runtime)
    #[arg(long, value_name = "N", default_value_t = 8)]
    threads: usize,
    /// Directory of the inspector's static files, served at /_nar-tool/ [default: the inspector built into this binary (feature embed-inspector); else www/ of the checkout the binary was built in, if present]
    #[arg(long, value_name = "DIR")]
    inspector: Option<PathBuf>,
    /// Directory of the npm package, whose browser entry (browser.js, lib/) the inspector imports from /_nar-tool/pkg/ [default: the built-in one; else pkg/ beside the inspector's www/, if present]
    #[arg(long, value_name = "DIR")]
    pkg: Option<PathBuf>,
    /// Directory of the wasm build, served at /_nar-tool/pkg/wasm/ [default: the package's wasm/ when --pkg is given; else the built-in one]
    #[arg(long, value_name = "DIR")]
    wasm: Option<PathBuf>,
    /// Do not log requests
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Credentials for proxied HTTP caches
    #[command(flatten)]
    netrc: crate::remote::NetrcArgs,
}

/// What clients may take (see the README's threat model).
#[derive(clap::Args)]
struct LimitArgs {
    /// Connections served at once; when near, idle ones are closed first; beyond, 503
    #[arg(long, default_value_t = Limits::default().max_connections, value_name = "N")]
    max_connections: usize,
    /// Connections one client address (an IPv4 address, an IPv6 /64) may hold at once
    #[arg(long, default_value_t = Limits::default().max_connections_per_client, value_name = "N")]
    max_connections_per_client: usize,
    /// Seconds a request head may take from its first byte to its end
    #[arg(long, default_value = "10", value_parser = seconds, value_name = "SECS")]
    header_timeout: Duration,
    /// Seconds a connection may sit idle between requests
    #[arg(long, default_value = "30", value_parser = seconds, value_name = "SECS")]
    idle_timeout: Duration,
    /// The slowest a client may take a response, in bytes per second over --rate-window, while the server waits on it
    #[arg(long, default_value_t = Limits::default().min_rate, value_name = "BYTES")]
    min_rate: u64,
    /// Seconds over which --min-rate is measured
    #[arg(long, default_value = "10", value_parser = seconds, value_name = "SECS")]
    rate_window: Duration,
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Limits {
        Limits {
            max_connections: a.max_connections,
            max_connections_per_client: a.max_connections_per_client,
            header_timeout: a.header_timeout,
            idle_timeout: a.idle_timeout,
            min_rate: a.min_rate,
            rate_window: a.rate_window,
        }
    }
}

/// A positive number of seconds (`1.5` too).
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    // First, while this is the only thread: it takes sockets and variables from the environment.
    let handed_in = activation::take_listeners().map_err(|e| anyhow!("socket activation: {e}"))?;
    let ServeArgs {
        cache,
        named,
        auth,
        listen,
        threads,
        inspector,
        pkg,
        wasm,
        quiet,
        limits,
        netrc,
    } = args;
    netrc.configure();
    let mut caches = Vec::new();
    for arg in cache
        .iter()
        .map(|c| (None, c.as_str()))
        .chain(named.iter().map(|n| match n.split_once('=') {
            Some((name, c)) => (Some(name), c),
            None => (Some(""), n.as_str()),
        }))
    {
        let (name, cache) = arg;
        if name == Some("") {
            bail!("--cache {cache}: expected NAME=CACHE");
        }
        let location = cache_location(cache)?;
        if let CacheLocation::Directory(dir) = &location {
            match fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => bail!("cannot serve the cache {dir}: not a directory"),
                Err(e) => bail!("cannot serve the cache {dir}: {e}"),
            }
        }
        caches.push((name.map(str::to_string), location));
    }
    // A folder given must be there: serving without it would only show errors in the browser.
    for (flag, dir, needs) in [
        ("--inspector", &inspector, "index.html"),
        ("--pkg", &pkg, "browser.js"),
        ("--wasm", &wasm, ""),
    ] {
        if let Some(dir) = dir {
            if !dir.join(needs).exists() {
                let what = match needs {
                    "" => String::new(),
                    file => format!(" with {file}"),
                };
                bail!(
                    "{flag} {}: no such directory{what}; refusing to start",
                    dir.display()
                );
            }
        }
    }
    // A binary with the inspector built in serves that one (it matches the binary's core);
    // folders of a checkout are only the fallback of a build without it.
    let built_in = has_embedded_inspector();
    let inspector = inspector.or_else(|| if built_in { None } else { default_inspector() });
    let pkg = pkg.or_else(|| {
        if built_in {
            return None;
        }
        let dir = inspector.as_ref()?.join("../pkg");
        dir.join("browser.js").is_file().then_some(dir)
    });
    let opts_inspector = inspector.clone();
    let described: Vec<String> = caches
        .iter()
        .map(|(name, location)| match name {
            None => location.to_string(),
            Some(name) => format!("{location} at /{name}/"),
        })
        .collect();
    let protected = auth.is_some();
    let opts = ServeOptions {
        caches,
        auth,
        listen,
        threads,
        inspector,
        pkg,
        wasm,
        log: !quiet,
        limits: limits.into(),
    };
    let served = match handed_in {
        Some(listeners) => Served::with_listeners(&opts, listeners)?,
        None => Served::bind(&opts)?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let serving = format!(
        "serving {} on {} (Ctrl-C stops{})",
        described.join(", "),
        served.urls("").join(" and "),
        if protected {
            "; only for those the auth file names"
        } else {
            ""
        }
    );
    let inspector_url = served.urls("/_nar-tool/").swap_remove(0);
    let inspector = match (&opts_inspector, built_in) {
        (Some(dir), _) => format!("the inspector (from {}): {inspector_url}", dir.display()),
        (None, true) => format!("the inspector: {inspector_url}"),
        (None, false) => "no inspector: this build has none built in (feature embed-inspector); --inspector DIR gives one".to_string(),
    };
    // One write(2) (`eprint!` writes each piece of its format by itself: stderr is unbuffered),
    // so that whoever reads the log sees both lines at once.
    let _ = std::io::stderr().write_all(format!("{serving}\n{inspector}\n").as_bytes());
    served.run(stop).context("serving")?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The inspector's files when running from a checkout (`www/` beside `target/`).
fn default_inspector() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("www"))
        .find(|w| w.join("index.html").is_file())
}
