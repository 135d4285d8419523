//! The system calls the walk makes, each relative to a directory's descriptor.

use super::*;

pub(super) fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a NUL-terminated string; the descriptor returned is ours alone.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(super) fn lstat_kind(dir: RawFd, name: &CStr) -> io::Result<Kind> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` is large enough for a `stat`.
    if unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    let mode = unsafe { st.assume_init() }.st_mode;
    Ok(match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Special,
    })
}

pub(super) fn readlink_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        // SAFETY: `name` is NUL-terminated; readlinkat writes at most `capacity` bytes.
        let n = unsafe {
            libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.capacity())
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.capacity() {
            // SAFETY: readlinkat wrote `n` bytes.
            unsafe { buf.set_len(n) };
            return Ok(buf);
        }
        // The target may have been cut: try again with more room.
        buf.reserve(buf.capacity() * 2);
    }
}
