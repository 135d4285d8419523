//! `nar-tool sign`: add signatures to narinfo files in place.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::util::{read_secret_key, NarinfoFile};

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
        let mut file = NarinfoFile::read(path)?;
        for key in &keys {
            file.info
                .sign(key)
                .with_context(|| format!("{}", path.display()))?;
        }
        file.replace(path)?;
    }
    Ok(ExitCode::SUCCESS)
}
