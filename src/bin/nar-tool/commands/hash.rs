//! `nar-tool hash`: NAR or flat hashes of paths, and `hash convert` between encodings.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use nar_tool::hash::{Encoding, Hash, HashAlgo, Hasher};

use crate::util::nar_hash;

/// Print the hash of each PATH's NAR (or, with --flat, of its contents), like `nix-hash`
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HashArgs {
    #[command(subcommand)]
    convert: Option<HashCommand>,
    /// Hash algorithm (default sha256; nix-hash's default is md5, so pass --type to compare)
    #[arg(long = "type", value_enum, default_value_t = AlgoArg::Sha256)]
    algo: AlgoArg,
    #[command(flatten)]
    format: FormatArgs,
    /// Hash the file's contents instead of its NAR
    #[arg(long)]
    flat: bool,
    /// Files, directories or symlinks to hash
    paths: Vec<PathBuf>,
}

#[derive(Args)]
#[group(multiple = false)]
struct FormatArgs {
    /// Print base16 (hex), the default
    #[arg(long)]
    base16: bool,
    /// Print nixbase32
    #[arg(long)]
    base32: bool,
    /// Print base64
    #[arg(long)]
    base64: bool,
    /// Print an SRI hash (sha256-…)
    #[arg(long)]
    sri: bool,
}

impl FormatArgs {
    fn encoding(&self) -> Encoding {
        if self.base32 {
            Encoding::Nixbase32
        } else if self.base64 {
            Encoding::Base64
        } else if self.sri {
            Encoding::Sri
        } else {
            Encoding::Base16
        }
    }
}

#[derive(Subcommand)]
enum HashCommand {
    /// Convert hashes between base16, nixbase32, base64 and SRI
    Convert {
        /// Algorithm of hashes given without a prefix
        #[arg(long = "type", value_enum)]
        algo: Option<AlgoArg>,
        #[command(flatten)]
        format: FormatArgs,
        /// Print with the `algo:` prefix
        #[arg(long)]
        prefix: bool,
        /// Hashes in any form (`sha256:…`, SRI, or bare digits with --type)
        #[arg(value_name = "HASH", required = true)]
        hashes: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgoArg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgoArg> for HashAlgo {
    fn from(a: AlgoArg) -> HashAlgo {
        match a {
            AlgoArg::Md5 => HashAlgo::Md5,
            AlgoArg::Sha1 => HashAlgo::Sha1,
            AlgoArg::Sha256 => HashAlgo::Sha256,
            AlgoArg::Sha512 => HashAlgo::Sha512,
        }
    }
}

pub fn run(args: HashArgs) -> Result<ExitCode> {
    if let Some(HashCommand::Convert {
        algo,
        format,
        prefix,
        hashes,
    }) = args.convert
    {
        for h in hashes {
            let parsed = match algo {
                Some(a) => Hash::parse_as(a.into(), &h),
                None => Hash::parse_any(&h),
            }
            .with_context(|| format!("cannot convert {h:?}"))?;
            let e = format.encoding();
            println!(
                "{}",
                if prefix {
                    parsed.to_prefixed(e)
                } else {
                    parsed.encode(e)
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.paths.is_empty() {
        bail!("no PATH given (see `nar-tool hash --help`)");
    }
    let algo: HashAlgo = args.algo.into();
    for path in &args.paths {
        let h = if args.flat {
            let mut hasher = Hasher::new(algo);
            io::copy(
                &mut File::open(path).with_context(|| format!("{}", path.display()))?,
                &mut hasher,
            )
            .with_context(|| format!("reading {}", path.display()))?;
            hasher.finish()
        } else {
            nar_hash(path, algo)?.0
        };
        println!("{}", h.encode(args.format.encoding()));
    }
    Ok(ExitCode::SUCCESS)
}
