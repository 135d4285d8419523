//! The NAR grammar's vocabulary and limits, with no I/O: tokens, padding, and the rules for
//! entry names and symlink targets that both the reader and the writer enforce.

/// The archive's first string.
pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest entry name (a file name on every file system Nix supports).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target (`PATH_MAX - 1`).
pub const MAX_TARGET_LEN: usize = 4095;
/// Deepest directory nesting accepted by default: a path of 2048 one-character components
/// already fills Linux's `PATH_MAX`, so nothing deeper could be restored or dumped.
pub const DEFAULT_MAX_DEPTH: usize = 2048;
/// Suffix Nix appends on restore (with `use-case-hack`) to names that collide case-insensitively.
pub const CASE_HACK_SUFFIX: &str = "~nix~case~hack~";

/// Zero bytes that follow a string of `len` bytes.
pub const fn padding_len(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// Appends `str(s)`: little-endian length, bytes, zero padding.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(&[0u8; 8][..padding_len(s.len() as u64)]);
}

/// Why a name cannot be a directory entry.
pub fn check_entry_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("the name is empty")
    } else if name == b"." || name == b".." {
        Err("the name is \".\" or \"..\"")
    } else if name.contains(&b'/') {
        Err("the name contains '/'")
    } else if name.contains(&0) {
        Err("the name contains a NUL byte")
    } else if name.len() > MAX_NAME_LEN {
        Err("the name is longer than 255 bytes")
    } else {
        Ok(())
    }
}

/// Why a string cannot be a symlink target.
pub fn check_symlink_target(target: &[u8]) -> Result<(), &'static str> {
    if target.is_empty() {
        Err("the symlink target is empty")
    } else if target.contains(&0) {
        Err("the symlink target contains a NUL byte")
    } else if target.len() > MAX_TARGET_LEN {
        Err("the symlink target is longer than 4095 bytes")
    } else {
        Ok(())
    }
}

/// Shows bytes from an archive in a message: UTF-8 where it is, escapes elsewhere, cut at 64 bytes.
pub fn show_bytes(b: &[u8]) -> String {
    let cut = &b[..b.len().min(64)];
    let mut s = format!("{:?}", String::from_utf8_lossy(cut));
    if b.len() > cut.len() {
        s.push_str(&format!(" (… {} bytes)", b.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding() {
        assert_eq!(padding_len(0), 0);
        assert_eq!(padding_len(1), 7);
        assert_eq!(padding_len(8), 0);
        assert_eq!(padding_len(13), 3);
        assert_eq!(padding_len(u64::MAX), 1);
    }

    #[test]
    fn names() {
        assert!(check_entry_name(b"a").is_ok());
        assert!(check_entry_name(&[b'x'; 255]).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0", &[b'x'; 256]] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_symlink_target(b"").is_err());
        assert!(check_symlink_target(&[b'x'; 4096]).is_err());
    }
}
