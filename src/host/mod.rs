//! Native-only services: the file system (dump, restore, atomic writes), the Nix database,
//! fast C-backed codecs, and the cache builder.

pub mod atomic;
pub mod build;
pub mod codec;
pub mod db;
pub mod demo;
pub mod fs;
pub mod serve;
pub mod storage;
mod walk;
mod xz;
