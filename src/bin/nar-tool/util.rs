//! Helpers shared by several commands: reading NARs, keys and narinfos, NAR hashes, sizes, jobs.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};

use nar_tool::hash::{Hash, HashAlgo, HashingWriter};
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::narinfo::NarInfo;
use nar_tool::signing::SecretKey;

/// A NAR file, or stdin for `-`, buffered.
pub fn open_nar(name: &str) -> Result<Box<dyn Read>> {
    let inner: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(name).with_context(|| name.to_string())?)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, inner)))
}

/// The hash and size of a path's NAR.
pub fn nar_hash(path: &Path, algo: HashAlgo) -> Result<(Hash, u64)> {
    let sink = HashingWriter::new(algo, io::sink());
    let (h, n, _) = dump_path(path, sink, CaseHack(false))?.finish();
    Ok((h, n))
}

/// A secret key file, as `nix-store --generate-binary-cache-key` writes it.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading secret key {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| format!("secret key file {}", path.display()))
}

/// A parsed narinfo file.
pub fn read_narinfo(path: &Path) -> Result<NarInfo> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NarInfo::parse(&text).with_context(|| format!("{}", path.display()))
}

/// `n` bytes in B, KiB, MiB, GiB or TiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `--jobs`, or the number of cores.
pub fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}
