//! `nar-tool sign`: add signatures to narinfo files in place.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::host::atomic::write_atomic;

use crate::util::{read_narinfo, read_secret_key};

/// Sign narinfo files in place (adds a `Sig:` line; the file is replaced atomically)
#[derive(clap::Args)]
pub struct SignArgs {
    /// Secret key file (as `nix-store --generate-binary-cache-key` writes)
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    #[arg(required = true)]
    narinfos: Vec<PathBuf>,
}

pub fn run(args: SignArgs) -> Result<ExitCode> {
    let keys = args
        .keys
        .iter()
        .map(|k| read_secret_key(k))
        .collect::<Result<Vec<_>>>()?;
    for path in &args.narinfos {
        let mut info = read_narinfo(path)?;
        for key in &keys {
            info.sign(key)
                .with_context(|| format!("{}", path.display()))?;
        }
        write_atomic(path, info.to_text().as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
