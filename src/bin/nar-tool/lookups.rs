//! The flags of commands that read remote caches: how their narinfo lookups are remembered
//! (`nar_tool::host::lookups`).

use std::path::PathBuf;
use std::time::Duration;

use nar_tool::host::lookups::{self, LookupConfig};

/// Remote lookups remembered, as Nix's narinfo disk cache does
#[derive(clap::Args)]
pub struct LookupArgs {
    /// Ask the remote cache again for every narinfo (revalidating with its ETag) however recently it was asked
    #[arg(long)]
    refresh: bool,
    /// Where remote narinfo lookups are remembered [default: $NAR_TOOL_LOOKUP_CACHE, else $XDG_CACHE_HOME/nar-tool/lookups, else ~/.cache/nar-tool/lookups]
    #[arg(long, value_name = "DIR")]
    lookup_cache: Option<PathBuf>,
    /// Do not remember remote lookups
    #[arg(long, conflicts_with_all = ["lookup_cache", "refresh"])]
    no_lookup_cache: bool,
    /// Seconds a narinfo found is trusted before it is revalidated (Nix's narinfo-cache-positive-ttl)
    #[arg(long, value_name = "SECS", default_value_t = lookups::POSITIVE_TTL.as_secs())]
    narinfo_ttl: u64,
    /// Seconds a narinfo not found is trusted as absent (Nix's narinfo-cache-negative-ttl)
    #[arg(long, value_name = "SECS", default_value_t = lookups::NEGATIVE_TTL.as_secs())]
    negative_ttl: u64,
}

impl LookupArgs {
    /// Turns remembering on as these flags say.
    pub fn configure(&self) {
        lookups::configure(LookupConfig {
            dir: if self.no_lookup_cache {
                None
            } else {
                self.lookup_cache.clone().or_else(lookups::default_dir)
            },
            positive_ttl: Duration::from_secs(self.narinfo_ttl),
            negative_ttl: Duration::from_secs(self.negative_ttl),
            refresh: self.refresh,
            max_entries: lookups::MAX_ENTRIES,
        });
    }
}
