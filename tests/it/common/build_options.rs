//! Options for the library's `build_cache`: one place that spells every field, so that a test
//! states only the fields it varies (`BuildOptions { compression: …, ..build_options(…) }`).

use std::path::{Path, PathBuf};

use nar_tool::compression::Compression;
use nar_tool::host::build::{BuildOptions, MetadataSource, DEFAULT_XZ_MEMORY};
use nar_tool::store_path::StoreDir;

/// A build of `paths` (and their closure) of `/nix/store` read below `store_root` into `to`:
/// zstd, 2 jobs, unsigned, no listings, no index, priority 30, no `WantMassQuery`.
pub fn build_options<P: AsRef<str>>(
    to: PathBuf,
    store_root: &Path,
    metadata: MetadataSource,
    paths: impl IntoIterator<Item = P>,
) -> BuildOptions {
    let store_dir = StoreDir::new("/nix/store").unwrap();
    BuildOptions {
        to,
        store_root: store_root.to_path_buf(),
        paths: paths
            .into_iter()
            .map(|p| store_dir.parse_path(p.as_ref()).unwrap())
            .collect(),
        store_dir,
        metadata,
        compression: Compression::Zstd,
        level: None,
        jobs: 2,
        keys: Vec::new(),
        nar_listing: false,
        closure: true,
        force: false,
        priority: 30,
        want_mass_query: false,
        xz_memory: DEFAULT_XZ_MEMORY,
        interrupt: None,
        policy: Default::default(),
        index: false,
    }
}
