//! `nar-tool store-path`: the store path `nix-store --add` would give a path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use nar_tool::hash::HashAlgo;
use nar_tool::store_path::{make_source_path, StoreDir};

use crate::util::nar_hash;

/// Print the store path `nix-store --add PATH` would create, without Nix
#[derive(clap::Args)]
pub struct StorePathArgs {
    /// The file or directory `nix-store --add` would add
    path: PathBuf,
    /// Name of the store path (default: PATH's file name)
    #[arg(long)]
    name: Option<String>,
    /// The store directory
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
}

pub fn run(args: StorePathArgs) -> Result<ExitCode> {
    let StorePathArgs {
        path,
        name,
        store_dir,
    } = args;
    let store_dir = StoreDir::new(&store_dir)?;
    let name = match name {
        Some(n) => n,
        None => lexical_file_name(&path)
            .ok_or_else(|| anyhow!("{} has no file name; pass --name", path.display()))?,
    };
    let (hash, _) = nar_hash(&path, HashAlgo::Sha256)?;
    println!(
        "{}",
        store_dir.display(&make_source_path(&store_dir, &name, &hash, &[], false)?)
    );
    Ok(ExitCode::SUCCESS)
}

/// The last component of `path` made absolute and cleaned of `.` and `..` without following
/// symlinks: the name `nix-store --add` gives a store path.
fn lexical_file_name(path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            std::path::Component::Normal(n) => parts.push(n),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.last().map(|n| n.to_string_lossy().into_owned())
}
