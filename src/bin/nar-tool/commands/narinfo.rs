//! `nar-tool narinfo check`: parse narinfo files and check their signatures.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use nar_tool::narinfo::similar_key;
use nar_tool::signing::PublicKey;

use crate::args::TrustedKeyArgs;
use crate::util::NarinfoFile;

/// Check narinfo files
#[derive(clap::Args)]
pub struct NarinfoArgs {
    #[command(subcommand)]
    command: NarinfoCommand,
}

#[derive(Subcommand)]
enum NarinfoCommand {
    /// Parse each narinfo and, with trusted keys, check its signatures; exit 1 on any problem.
    /// Keys Nix does not read (a misspelt `Referenes:`) are warned about on stderr
    Check {
        /// The narinfo files to check
        #[arg(value_name = "NARINFO", required = true)]
        narinfos: Vec<PathBuf>,
        #[command(flatten)]
        trusted: TrustedKeyArgs,
    },
}

pub fn run(args: NarinfoArgs) -> Result<ExitCode> {
    let NarinfoCommand::Check { narinfos, trusted } = args.command;
    let trusted = trusted.load()?;
    let mut failed = 0;
    for path in &narinfos {
        match check_narinfo(path, &trusted) {
            Ok(msg) => println!("ok   {}: {msg}", path.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e:#}", path.display());
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} narinfos failed", narinfos.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn check_narinfo(path: &Path, trusted: &[PublicKey]) -> Result<String> {
    let info = NarinfoFile::read(path)?.info;
    for (key, _) in &info.extra {
        let hint = similar_key(key)
            .map(|k| format!("; did you mean {k:?}?"))
            .unwrap_or_default();
        eprintln!(
            "nar-tool: warning: {}: unknown key {key:?} (Nix ignores it){hint}",
            path.display()
        );
    }
    let expected = format!("{}.narinfo", info.store_path.hash_part());
    if path.file_name().is_some_and(|n| {
        n.to_string_lossy().ends_with(".narinfo") && n.to_string_lossy() != expected
    }) {
        bail!(
            "file name does not match StorePath {} (expected {expected})",
            info.path()
        );
    }
    if trusted.is_empty() {
        return Ok(format!(
            "{} (signatures not checked: no --trusted-key or --trusted-key-file)",
            info.path()
        ));
    }
    let check = info.check_signatures(trusted)?;
    if !check.invalid.is_empty() {
        bail!(
            "{}: signature by {} does not verify (changed after signing?)",
            info.path(),
            check.invalid.join(", ")
        );
    }
    if check.valid.is_empty() {
        bail!("{}: no valid signature by a trusted key", info.path());
    }
    Ok(format!(
        "{} (signed by {})",
        info.path(),
        check.valid.join(", ")
    ))
}
