//! `nar-tool key`: generate signing key pairs, print a secret key's public key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use nar_tool::host::atomic::write_atomic;
use nar_tool::signing::SecretKey;

use crate::util::read_secret_key;

/// Manage binary-cache signing keys
#[derive(clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a key pair NAME (convention: `host-1`)
    Generate {
        /// The key's name, which its signatures carry (e.g. cache.example.org-1)
        name: String,
        /// Where to write the secret key (mode 600): keep it private, sign with it
        #[arg(long, value_name = "SECRET-KEY-FILE")]
        secret: PathBuf,
        /// Where to write the public key: give it to the caches' users (trusted-public-keys)
        #[arg(long, value_name = "PUBLIC-KEY-FILE")]
        public: PathBuf,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a secret key file
    Public {
        /// The secret key file
        #[arg(value_name = "SECRET-KEY-FILE")]
        secret: PathBuf,
    },
}

pub fn run(args: KeyArgs) -> Result<ExitCode> {
    match args.command {
        KeyCommand::Generate {
            name,
            secret,
            public,
            force,
        } => {
            generate(&name, &secret, &public, force)?;
        }
        KeyCommand::Public { secret } => println!("{}", read_secret_key(&secret)?.public_key()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a new key pair `name` to the files `secret` and `public` (refusing to overwrite them
/// unless `force`) and returns its secret key.
pub fn generate(name: &str, secret: &Path, public: &Path, force: bool) -> Result<SecretKey> {
    if name.is_empty() || name.contains(':') {
        bail!("key name {name:?} must be non-empty and contain no ':'");
    }
    for f in [secret, public] {
        if !force && f.exists() {
            bail!("{} exists; pass --force to overwrite", f.display());
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    let key = SecretKey::from_seed(name, &seed);
    write_atomic(secret, key.to_text().as_bytes(), 0o600)
        .with_context(|| format!("writing {}", secret.display()))?;
    write_atomic(public, key.public_key().to_string().as_bytes(), 0o644)
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(key)
}
