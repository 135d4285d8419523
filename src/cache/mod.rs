//! The cache engine's pure parts: store metadata from the formats Nix exports, the reference
//! graph (closures, referrers, why-depends), reference scanning, and the order in which a
//! cache's narinfos may be published.

pub mod fetch;
pub mod gc;
pub mod graph;
pub mod index;
pub mod layout;
pub mod location;
pub mod metadata;
pub mod order;
pub mod policy;
pub mod refscan;
pub mod sign;
pub mod storage;
pub mod upstream;
pub mod verify;
