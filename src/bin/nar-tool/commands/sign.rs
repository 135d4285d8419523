//! `nar-tool sign`: add signatures to narinfos, as files or where a cache keeps them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::cache::sign::{sign_narinfos, Which};
use nar_tool::store_path::StoreDir;

use crate::args::cache_location;
use crate::util::{read_secret_key, NarinfoFile};

/// Sign narinfos in place (adds a `Sig:` line): narinfo files, or with --cache the narinfos of a
/// cache (a directory or a bucket); each is replaced atomically, and only if unchanged since read
#[derive(clap::Args)]
pub struct SignArgs {
    /// Sign with the key in this secret key file, as `nar-tool key generate --secret` or
    /// `nix-store --generate-binary-cache-key` writes it (repeatable)
    #[arg(
        long = "secret-key-file",
        alias = "key",
        value_name = "SECRET-KEY-FILE",
        required = true
    )]
    keys: Vec<PathBuf>,
    /// Sign the narinfos of this cache: a directory, file://DIR or s3://BUCKET[/PREFIX]?… (all of them, or those NARINFOS names)
    #[arg(long, value_name = "CACHE")]
    cache: Option<String>,
    /// The store directory of the cache's paths (to read store paths given as names)
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
    /// Narinfo files; with --cache: hash parts, <hashpart>.narinfo names or store paths (none: every narinfo)
    #[arg(required_unless_present = "cache", value_name = "NARINFOS")]
    narinfos: Vec<String>,
}

pub fn run(args: SignArgs) -> Result<ExitCode> {
    let keys = args
        .keys
        .iter()
        .map(|k| read_secret_key(k))
        .collect::<Result<Vec<_>>>()?;
    if let Some(cache) = &args.cache {
        let location = cache_location(cache)?;
        let storage = nar_tool::host::open::open_write(&location)
            .with_context(|| format!("opening cache {location}"))?;
        let which = if args.narinfos.is_empty() {
            Which::All
        } else {
            Which::Named(&args.narinfos)
        };
        let store_dir = StoreDir::new(&args.store_dir)?;
        let signed = sign_narinfos(&*storage, &keys, which, &store_dir)
            .with_context(|| format!("signing the narinfos of {location}"))?;
        eprintln!("{location}: signed {} narinfos", signed.narinfos);
        return Ok(ExitCode::SUCCESS);
    }
    for name in &args.narinfos {
        let path = Path::new(name);
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
