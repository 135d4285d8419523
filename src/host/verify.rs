//! The native verify driver: the pull driver's per-path check ([`check_path`]) run on a pool of
//! threads, with the C-backed decoders. The report is the sequential driver's
//! ([`crate::cache::verify::verify_cache`]): only the order of the work differs.

use rayon::prelude::*;

use crate::cache::verify::{
    check_path, verify_cache_upstream, CacheStorage, PathCheck, Report, VerifyOptions,
};
use crate::host::storage::native_decoder;
use crate::host::upstream::Upstreams;

/// Verifies the cache `storage` holds, `jobs` paths at a time. `on_listed` is told how many
/// narinfos there are before any is checked, `on_path` of each check as it ends (in any order).
pub fn verify_cache(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    jobs: usize,
    on_listed: impl FnOnce(usize),
    on_path: impl Fn(&PathCheck) + Sync,
) -> Result<Report, rayon::ThreadPoolBuildError> {
    let none = Upstreams::none(&opts.store_dir);
    verify_cache_upstream_with(storage, opts, jobs, &none, on_listed, on_path)
}

/// [`verify_cache`], a reference missing from the cache counting as present when one of the
/// `upstream` caches serves it (asked once the paths are checked, many at once).
pub fn verify_cache_upstream_with(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    jobs: usize,
    upstream: &Upstreams,
    on_listed: impl FnOnce(usize),
    on_path: impl Fn(&PathCheck) + Sync,
) -> Result<Report, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()?;
    let check_all = |storage: &dyn CacheStorage, names: &[String]| {
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
    };
    Ok(verify_cache_upstream(storage, opts, check_all, |missing| {
        upstream.ask(missing)
    }))
}
