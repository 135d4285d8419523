//! `nar-tool cat`: one regular file from inside a NAR, to stdout.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use nar_tool::nar::listing::{self, Found};
use nar_tool::nar::NarReader;

use crate::util::open_nar;

/// Print one file from inside a NAR
#[derive(clap::Args)]
pub struct CatArgs {
    /// NAR file, or `-` for stdin
    nar: String,
    /// Path of a regular file inside the archive, e.g. /bin/hello
    path: String,
}

pub fn run(args: CatArgs) -> Result<ExitCode> {
    let CatArgs { nar, path } = args;
    let mut reader = NarReader::new(open_nar(&nar)?);
    match listing::find(&mut reader, &path).with_context(|| format!("reading {nar}"))? {
        Ok(Found::Regular { .. }) => {
            let mut out = BufWriter::new(io::stdout().lock());
            io::copy(&mut reader.contents(), &mut out).with_context(|| format!("reading {nar}"))?;
            out.flush()?;
        }
        Ok(Found::Symlink { target }) => bail!(
            "{nar}: {path:?} is a symlink to {:?}, not a regular file",
            String::from_utf8_lossy(&target)
        ),
        Ok(Found::Directory) => bail!("{nar}: {path:?} is a directory, not a regular file"),
        Err(msg) => bail!("{nar}: {msg}"),
    }
    Ok(ExitCode::SUCCESS)
}
