//! `--upstream` and `--upstream-key`, shared by `build-cache` and `verify`
//! (`nar_tool::host::upstream`).

use anyhow::{Context, Result};

use nar_tool::host::upstream::Upstreams;
use nar_tool::signing::PublicKey;
use nar_tool::store_path::StoreDir;

use crate::args::cache_location;

/// Upstream caches (such as https://cache.nixos.org) that serve paths besides this cache
#[derive(clap::Args, Debug, Default)]
pub struct UpstreamArgs {
    /// An upstream binary cache: http(s)://…, a directory, file://DIR or s3://… (repeatable; asked
    /// in order). A store path counts as served when the upstream has a narinfo naming that very
    /// path (signed by an --upstream-key, if any is given). build-cache leaves out of the cache
    /// every path of the closure an upstream serves, the paths given as arguments too (as `nix
    /// copy` skips what its destination has), and keeps the rest; verify counts a reference an
    /// upstream serves as present. An upstream without a nix-cache-info for this store directory
    /// is an error; one that cannot be asked about a path (a server error, a timeout) or answers
    /// with a narinfo naming another path or that does not parse, serves nothing of it: with a
    /// warning, build-cache keeps the path, and verify reports the reference (check-failed when
    /// the upstream could not be asked)
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// Only narinfos with a valid signature by this key NAME:BASE64 count as served upstream
    /// (repeatable; default: any narinfo naming the path counts)
    #[arg(long = "upstream-key", value_name = "KEY", requires = "upstreams")]
    pub upstream_keys: Vec<String>,
}

impl UpstreamArgs {
    /// Opens the upstreams (none if no --upstream is given), reading each one's nix-cache-info.
    pub fn open(&self, store_dir: &StoreDir) -> Result<Upstreams> {
        let mut keys = Vec::new();
        for k in &self.upstream_keys {
            keys.push(PublicKey::parse(k).with_context(|| format!("--upstream-key {k:?}"))?);
        }
        let locations = self
            .upstreams
            .iter()
            .map(|u| cache_location(u))
            .collect::<Result<Vec<_>>>()?;
        Ok(Upstreams::open(&locations, keys, store_dir)?)
    }
}
