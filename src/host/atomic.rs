//! Crash-safe file writes: a temporary sibling, fsync'd, then renamed over the target, so a
//! reader sees the old file or the new one, never a part.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `data` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(data))
}

/// Streams into a temporary sibling of `path` through `fill`, then renames it into place.
/// On error the temporary is removed and `path` is untouched.
pub fn write_atomic_with<T>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)?;
    let out = fill(tmp.as_file_mut())?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(out)
}

/// A file being written that starts the kernel's writeback of each few MiB as soon as they are
/// written (`sync_file_range`, Linux), so that the `fdatasync` which makes the whole file
/// durable before its rename finds little left to wait for: durability without a pause at the
/// end of every large file. Elsewhere it is a plain file.
pub struct EarlyWriteback {
    file: fs::File,
    written: u64,
    /// Where the region not yet handed to writeback starts.
    flushed_to: u64,
}

impl EarlyWriteback {
    /// Bytes written between two writeback requests.
    const STEP: u64 = 2 << 20;

    pub fn new(file: fs::File) -> EarlyWriteback {
        EarlyWriteback {
            file,
            written: 0,
            flushed_to: 0,
        }
    }

    /// Makes everything written durable and gives back the file.
    pub fn sync(self) -> io::Result<fs::File> {
        self.file.sync_data()?;
        Ok(self.file)
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let len = self.written - self.flushed_to;
        // SAFETY: a plain system call on a descriptor we own; failure only loses the hint.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.flushed_to as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.flushed_to = self.written;
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&mut self) {}
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= Self::STEP {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
