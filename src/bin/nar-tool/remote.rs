//! The flags of commands that read remote caches: how their narinfo lookups are remembered
//! (`nar_tool::host::lookups`) and where their credentials are (`nar_tool::host::netrc`).

use std::path::PathBuf;
use std::time::Duration;

use nar_tool::host::lookups::{self, LookupConfig};

/// Remote lookups remembered, as Nix's narinfo disk cache does
#[derive(clap::Args)]
pub struct LookupCacheArgs {
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

impl LookupCacheArgs {
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

/// Credentials for HTTP caches
#[derive(clap::Args)]
pub struct NetrcArgs {
    /// Credentials for HTTP caches, sent as HTTP Basic to the host an entry names (`machine HOST login USER password SECRET`), as Nix's netrc-file [default: the first of $NIX_CONF_DIR/netrc (/etc/nix/netrc), $NETRC, ~/.netrc]
    #[arg(long, value_name = "FILE")]
    netrc_file: Option<PathBuf>,
}

impl NetrcArgs {
    /// Uses the file given, if one was.
    pub fn configure(&self) {
        if let Some(file) = &self.netrc_file {
            nar_tool::host::netrc::configure(file.clone());
        }
    }
}

/// Everything a command that reads remote caches takes
#[derive(clap::Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    lookups: LookupCacheArgs,
    #[command(flatten)]
    netrc: NetrcArgs,
}

impl RemoteArgs {
    /// Turns remembering on and chooses the credentials as these flags say.
    pub fn configure(&self) {
        self.lookups.configure();
        self.netrc.configure();
    }
}
