//! `nar-tool ls`: the files in a NAR, as text or as the `.ls` JSON document.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use nar_tool::nar::listing::{Listing, ListingNode};

use crate::util::open_nar;

/// List the files in a NAR (file or `-` for stdin), like `nix nar ls`
#[derive(clap::Args)]
pub struct LsArgs {
    /// NAR file, or `-` for stdin
    nar: String,
    /// Path inside the archive to list
    #[arg(default_value = "/")]
    path: String,
    /// Print the `.ls` JSON document (with narOffset) instead
    #[arg(long)]
    json: bool,
    /// List directories recursively
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Show type, size and target
    #[arg(short = 'l', long)]
    long: bool,
}

pub fn run(args: LsArgs) -> Result<ExitCode> {
    let LsArgs {
        nar,
        path,
        json,
        recursive,
        long,
    } = args;
    let listing = Listing::from_nar(open_nar(&nar)?).with_context(|| format!("reading {nar}"))?;
    if json {
        println!("{}", listing.to_json());
    } else {
        let node = listing
            .root
            .get(&path)
            .ok_or_else(|| anyhow!("{nar}: no file {path:?} in the archive"))?;
        let mut out = BufWriter::new(io::stdout().lock());
        print_listing(&mut out, node, &path, recursive, long, true)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_listing(
    out: &mut impl Write,
    node: &ListingNode,
    path: &str,
    recursive: bool,
    long: bool,
    top: bool,
) -> Result<()> {
    // An explicit stack keeps deep archives from exhausting ours.
    let mut stack = vec![(node, path.trim_end_matches('/').to_string(), top)];
    while let Some((node, rel, top)) = stack.pop() {
        let shown = if rel.is_empty() {
            ".".to_string()
        } else {
            rel.clone()
        };
        match node {
            ListingNode::Directory { entries } if top || recursive => {
                if !top {
                    print_entry(out, node, &shown, long)?;
                }
                for (name, child) in entries.iter().rev() {
                    stack.push((child, format!("{rel}/{name}"), false));
                }
            }
            _ => print_entry(out, node, &shown, long)?,
        }
    }
    Ok(())
}

fn print_entry(out: &mut impl Write, node: &ListingNode, path: &str, long: bool) -> Result<()> {
    if !long {
        writeln!(out, "{path}")?;
        return Ok(());
    }
    match node {
        ListingNode::Regular {
            size, executable, ..
        } => writeln!(
            out,
            "{} {size:>20} {path}",
            if *executable {
                "-r-xr-xr-x"
            } else {
                "-r--r--r--"
            }
        )?,
        ListingNode::Directory { .. } => writeln!(out, "dr-xr-xr-x {:>20} {path}", 0)?,
        ListingNode::Symlink { target } => {
            writeln!(out, "lrwxrwxrwx {:>20} {path} -> {target}", 0)?
        }
    }
    Ok(())
}
