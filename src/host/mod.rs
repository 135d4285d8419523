//! Native-only services: the file system (dump, restore, atomic writes), the Nix database,
//! fast C-backed codecs, the cache builder, and the parallel cache verifier.

pub mod atomic;
pub mod build;
pub mod codec;
pub mod concurrent;
pub mod db;
pub mod demo;
pub mod dir_storage;
pub mod fs;
pub mod lookups;
pub mod netrc;
pub mod object;
pub mod open;
pub mod serve;
pub mod storage;
pub mod store;
pub mod upstream;
pub mod verify;
mod walk;
mod xz;

/// Helpers for the unit tests of the native services.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{self, Write};

    /// A sink that takes `left` bytes, then fails as a closed pipe or a full disk would.
    pub struct FailingSink {
        pub left: usize,
    }

    impl Write for FailingSink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"));
            }
            let n = data.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
