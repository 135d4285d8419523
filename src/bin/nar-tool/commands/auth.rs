//! `nar-tool auth`: the auth file of `serve --auth`: principals and their hashed secrets.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::Subcommand;

use nar_tool::host::atomic::write_atomic;
use nar_tool::host::serve::auth::file::{self, Entry, MAX_SECRET};

/// Manage the auth file of `serve --auth` (no secret is stored in clear)
#[derive(clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Add NAME (or replace its secret) with the secret read from stdin's first line, or a generated one
    Add {
        /// The auth file (created, mode 600, if missing)
        file: std::path::PathBuf,
        /// The user or token name: letters, digits, '_' and '-'
        name: String,
        /// A cache NAME may read (a NAME of `serve --cache NAME=…`); repeat for several [default: all]
        #[arg(long = "cache", value_name = "CACHE")]
        caches: Vec<String>,
        /// Generate a random secret and print it, with the bearer token NAME.SECRET, on stdout (shown once)
        #[arg(long)]
        generate: bool,
    },
    /// Remove NAME
    Remove {
        file: std::path::PathBuf,
        name: String,
    },
    /// List the names and the caches each may read
    List { file: std::path::PathBuf },
}

pub fn run(args: AuthArgs) -> Result<ExitCode> {
    match args.command {
        AuthCommand::Add {
            file: path,
            name,
            caches,
            generate,
        } => {
            file::check_name(&name).map_err(|e| anyhow!(e))?;
            for c in &caches {
                file::check_cache_name(c).map_err(|e| anyhow!(e))?;
            }
            let mut entries = read(&path, true)?;
            let secret = if generate {
                let mut random = [0u8; 24];
                getrandom::fill(&mut random).map_err(|e| anyhow!("no randomness: {e}"))?;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
            } else {
                read_secret(&name)?
            };
            let hash = file::hash_secret(secret.as_bytes()).map_err(|e| anyhow!(e))?;
            let entry = Entry {
                name: name.clone(),
                hash,
                caches: (!caches.is_empty()).then_some(caches),
            };
            match entries.iter_mut().find(|e| e.name == name) {
                Some(old) => *old = entry,
                None => entries.push(entry),
            }
            write(&path, &entries)?;
            if generate {
                println!("secret: {secret}\nbearer token: {name}.{secret}");
            }
        }
        AuthCommand::Remove { file: path, name } => {
            let mut entries = read(&path, false)?;
            let before = entries.len();
            entries.retain(|e| e.name != name);
            if entries.len() == before {
                bail!("{} names no {name:?}", path.display());
            }
            write(&path, &entries)?;
        }
        AuthCommand::List { file: path } => {
            for e in read(&path, false)? {
                let caches = e.caches.map_or("(all caches)".into(), |c| c.join(","));
                println!("{}\t{caches}", e.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path, may_be_missing: bool) -> Result<Vec<Entry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => file::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
        Err(e) if may_be_missing && e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(path: &Path, entries: &[Entry]) -> Result<()> {
    write_atomic(path, file::format(entries).as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

/// The first line of stdin, without its line end; at most [`MAX_SECRET`] bytes, not empty.
fn read_secret(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("secret for {name} (echoed; or pipe it in): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(MAX_SECRET as u64 + 2)
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let secret = line.strip_suffix('\n').unwrap_or(&line);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        bail!("no secret on stdin (give it as the first line, or use --generate)");
    }
    if secret.len() > MAX_SECRET {
        bail!("the secret is longer than {MAX_SECRET} bytes");
    }
    Ok(secret.to_string())
}
