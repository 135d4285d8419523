//! The native verify driver: the pull driver's per-path check ([`check_path`]) run on a pool of
//! threads, with the C-backed decoders. The report is the sequential driver's
//! ([`crate::cache::verify::verify_cache`]): only the order of the work differs.

use rayon::prelude::*;

use crate::cache::verify::{
    check_path, verify_cache_with, CacheStorage, PathCheck, Report, VerifyOptions,
};
use crate::host::storage::native_decoder;

/// Verifies the cache `storage` holds, `jobs` paths at a time. `on_listed` is told how many
/// narinfos there are before any is checked, `on_path` of each check as it ends (in any order).
pub fn verify_cache(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    jobs: usize,
    on_listed: impl FnOnce(usize),
    on_path: impl Fn(&PathCheck) + Sync,
) -> Result<Report, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()?;
    Ok(verify_cache_with(storage, opts, |names| {
        on_listed(names.len());
        pool.install(|| {
            names
                .par_iter()
                .map(|n| {
                    let c = check_path(storage, n, opts, native_decoder);
                    on_path(&c);
                    c
                })
                .collect()
        })
    }))
}
