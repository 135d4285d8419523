//! nar-tool: build, serve, inspect and verify Nix binary caches.
//!
//! The pure core — [`nixbase32`], [`hash`], [`store_path`], [`nar`], [`narinfo`], [`signing`],
//! [`cache_info`], [`escape`] — takes bytes, `Read`/`Write` streams and strings, never the file system or the
//! network, and compiles to `wasm32-unknown-unknown`. The native [`host`] adapter (file system
//! dump/restore, the Nix DB, fast codecs) is compiled only for native targets; `wasm` (the
//! JavaScript API) only for wasm32.
//!
//! Everything streams: a NAR of any size goes through in constant memory, and no length read
//! from an input is allocated before it is checked against a limit.

pub mod cache;
pub mod cache_info;
pub mod compression;
pub mod derivation;
pub mod escape;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod nixbase32;
pub mod signing;
pub mod store_path;

#[cfg(not(target_arch = "wasm32"))]
pub mod host;

/// The JavaScript API (the npm package in `pkg/`).
#[cfg(target_arch = "wasm32")]
pub mod wasm;
