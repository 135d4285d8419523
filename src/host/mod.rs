//! Native-only services: the file system (dump, restore, atomic writes), and later the Nix
//! database, fast C-backed codecs and the file-system cache storage.

pub mod atomic;
pub mod fs;
