//! One module per subcommand: its arguments and its `run`.

pub mod auth;
pub mod build_cache;
pub mod cat;
pub mod demo;
pub mod dump;
pub mod fetch;
pub mod gc;
pub mod hash;
pub mod index;
mod index_source;
pub mod keep_paths;
pub mod key;
pub mod lookup;
pub mod ls;
pub mod narinfo;
pub mod optimise;
pub mod restore;
pub mod serve;
pub mod sign;
pub mod store_path;
pub mod verify;
pub mod why_depends;
