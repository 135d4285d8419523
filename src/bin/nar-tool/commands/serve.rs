//! `nar-tool serve`: serve a cache directory over HTTP until Ctrl-C.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use nar_tool::cache::location::CacheLocation;
use nar_tool::host::serve::{ServeOptions, Served};

use crate::args::cache_location;

/// Serve a cache directory over HTTP (a substituter for Nix; the inspector at /); Ctrl-C stops
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The cache: a directory, file://DIR, s3://BUCKET[/PREFIX]?endpoint=… (a private bucket, streamed through) or http(s)://… (proxied)
    #[arg(value_name = "CACHE")]
    cache: String,
    /// The address and port to listen on (0.0.0.0:8080 for every interface; port 0 picks a
    /// free one)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Worker threads of the HTTP server (tokio runtime)
    #[arg(long, value_name = "N", default_value_t = 8)]
    threads: usize,
    /// Directory of the inspector's static files [default: www/ beside the executable's repository, if present]
    #[arg(long, value_name = "DIR")]
    inspector: Option<PathBuf>,
    /// Directory of the npm package, whose browser entry (browser.js, lib/) the inspector imports from /pkg/ [default: pkg/ beside the inspector's www/, if present]
    #[arg(long, value_name = "DIR")]
    pkg: Option<PathBuf>,
    /// Directory of the wasm build, served at /pkg/wasm/ [default: the package's wasm/]
    #[arg(long, value_name = "DIR")]
    wasm: Option<PathBuf>,
    /// Do not log requests
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        cache,
        listen,
        threads,
        inspector,
        pkg,
        wasm,
        quiet,
    } = args;
    let location = cache_location(&cache)?;
    if let CacheLocation::Directory(dir) = &location {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("cannot serve the cache {dir}: not a directory"),
            Err(e) => bail!("cannot serve the cache {dir}: {e}"),
        }
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
    let inspector = inspector.or_else(default_inspector);
    let pkg = pkg.or_else(|| {
        let dir = inspector.as_ref()?.join("../pkg");
        dir.join("browser.js").is_file().then_some(dir)
    });
    let opts = ServeOptions {
        location: location.clone(),
        listen,
        threads,
        inspector,
        pkg,
        wasm,
        log: !quiet,
    };
    let served = Served::bind(&opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    eprintln!(
        "serving {} on http://{} (Ctrl-C stops)",
        location,
        served.address()
    );
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
