//! Finding references the way Nix does after a build: scanning bytes for the 32-character
//! hash parts of candidate store paths, across chunk boundaries, in one streaming pass.

use std::collections::{BTreeSet, HashMap};
use std::io;

use crate::nixbase32;
use crate::store_path::{StorePath, HASH_PART_LEN};

/// Scans a byte stream (fed in chunks) for the hash parts of candidate paths.
pub struct RefScanner {
    candidates: HashMap<[u8; HASH_PART_LEN], StorePath>,
    found: BTreeSet<StorePath>,
    /// The last `HASH_PART_LEN - 1` bytes of the previous chunk.
    tail: Vec<u8>,
    /// Scratch space for the tail joined with the next chunk's head.
    joined: Vec<u8>,
    is_digit: [bool; 256],
}

impl RefScanner {
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> RefScanner {
        let mut is_digit = [false; 256];
        for &c in nixbase32::ALPHABET {
            is_digit[c as usize] = true;
        }
        let candidates = candidates
            .into_iter()
            .map(|p| {
                (
                    p.hash_part()
                        .as_bytes()
                        .try_into()
                        .expect("hash parts have 32 characters"),
                    p.clone(),
                )
            })
            .collect();
        RefScanner {
            candidates,
            found: BTreeSet::new(),
            tail: Vec::with_capacity(HASH_PART_LEN),
            joined: Vec::with_capacity(2 * HASH_PART_LEN),
            is_digit,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if self.candidates.is_empty() {
            return;
        }
        // Hash parts straddling the previous chunk and this one.
        if !self.tail.is_empty() {
            let head = &data[..data.len().min(HASH_PART_LEN - 1)];
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            joined.extend_from_slice(&self.tail);
            joined.extend_from_slice(head);
            self.scan(&joined);
            self.joined = joined;
        }
        self.scan(data);
        // Keep the last 31 bytes seen, across chunks however small.
        let keep = HASH_PART_LEN - 1;
        if data.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - keep..]);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }

    fn scan(&mut self, s: &[u8]) {
        let n = HASH_PART_LEN;
        let mut i = 0;
        while i + n <= s.len() {
            // Check from the window's end: a non-digit at j lets the window skip past it.
            match (0..n).rev().find(|&j| !self.is_digit[s[i + j] as usize]) {
                Some(j) => i += j + 1,
                None => {
                    let key: &[u8; HASH_PART_LEN] =
                        s[i..i + n].try_into().expect("window of 32 bytes");
                    if let Some(p) = self.candidates.remove(key) {
                        self.found.insert(p);
                    }
                    i += 1;
                }
            }
        }
    }

    /// The candidates whose hash part appeared.
    pub fn finish(self) -> BTreeSet<StorePath> {
        self.found
    }
}

impl io::Write for RefScanner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_across_chunk_boundaries() {
        let a = StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-a").unwrap();
        let b = StorePath::from_base_name("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-b").unwrap();
        let c = StorePath::from_base_name("gn07vq3ysff2m4mz8scgjm7nmgaffhih-c").unwrap();
        let text = format!(
            "xx/nix/store/{}-a/bin and {}-b!",
            a.hash_part(),
            b.hash_part()
        );
        for split in 0..text.len() {
            let mut s = RefScanner::new([&a, &b, &c]);
            s.update(&text.as_bytes()[..split]);
            s.update(&text.as_bytes()[split..]);
            assert_eq!(
                s.finish(),
                [a.clone(), b.clone()].into_iter().collect(),
                "split at {split}"
            );
        }
        // Byte by byte too.
        let mut s = RefScanner::new([&a, &b, &c]);
        for byte in text.as_bytes() {
            s.update(std::slice::from_ref(byte));
        }
        assert_eq!(s.finish().len(), 2);
    }
}
