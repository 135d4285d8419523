//! `nar-tool dump`: a path's NAR to stdout.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use nar_tool::host::fs::{dump_path, CaseHack};

/// Write the NAR of PATH to stdout (what `nix-store --dump PATH` writes)
#[derive(clap::Args)]
pub struct DumpArgs {
    /// The file, directory or symlink to archive
    path: PathBuf,
    /// Strip `~nix~case~hack~N` suffixes from names, as Nix's use-case-hack does
    #[arg(long)]
    case_hack: bool,
}

pub fn run(args: DumpArgs) -> Result<ExitCode> {
    let out = BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let mut out = dump_path(&args.path, out, CaseHack(args.case_hack))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
