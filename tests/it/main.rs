//! The integration tests, one binary (one link, one run): each module is the test file it was,
//! sharing `common`. Native only: the file system, processes, the real Nix. (The wasm32 tests of
//! the JavaScript API are `tests/wasm_api.rs`, a binary of their own.)
#![cfg(not(target_arch = "wasm32"))]

mod common;

mod build_cache;
mod cli_core;
mod cli_usage;
mod core_golden;
mod decoders;
mod demo;
mod fetch;
mod fetch_drv;
mod fuzz_regressions;
mod gc;
mod hostile;
mod index;
mod lookups;
mod netrc;
mod nix_differential;
mod policy;
mod properties;
mod s3;
mod s3_direct;
mod s3_leases;
mod s3_limits;
mod serve;
mod serve_activation;
mod serve_auth;
mod serve_bundle;
mod serve_hostile;
mod serve_index;
mod storage_layer;
mod store_gc;
mod store_gc_runtime;
mod upstream;
mod verify;
