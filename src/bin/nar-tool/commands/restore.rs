//! `nar-tool restore`: unpack a NAR from stdin.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use nar_tool::host::fs::{restore_path, CaseHack};

/// Unpack a NAR from stdin into DEST, which must not exist (all or nothing)
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Where to unpack it (must not exist; created)
    dest: PathBuf,
    /// Rename names that collide case-insensitively to NAME~nix~case~hack~N, as Nix does
    #[arg(long)]
    case_hack: bool,
}

pub fn run(args: RestoreArgs) -> Result<ExitCode> {
    let dest = &args.dest;
    restore_path(io::stdin().lock(), dest, CaseHack(args.case_hack))
        .with_context(|| format!("restoring into {}", dest.display()))?;
    Ok(ExitCode::SUCCESS)
}
