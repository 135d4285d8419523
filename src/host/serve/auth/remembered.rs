//! Credentials verified lately, so that a client's every request does not cost a hash
//! verification (tens of milliseconds by design). Kept by a keyed digest of name and secret
//! (SHA-256 under a random per-process key: never the secret, and a lookup's timing tells nothing
//! about it) for [`REMEMBER_FOR`], at most [`MAX_REMEMBERED`] at once. Only successes are kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const REMEMBER_FOR: Duration = Duration::from_secs(60);
pub const MAX_REMEMBERED: usize = 4096;

pub struct Remembered {
    key: [u8; 32],
    /// Digest → (the principal's index, when verified).
    seen: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
}

impl Default for Remembered {
    fn default() -> Remembered {
        Remembered::new()
    }
}

impl Remembered {
    pub fn new() -> Remembered {
        let mut key = [0u8; 32];
        // Without randomness the key is still unknown to clients only if nothing else leaks;
        // a fixed one would make digests comparable across runs, so fail loudly instead.
        getrandom::fill(&mut key).expect("no random key for the credential cache");
        Remembered {
            key,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, name: &str, secret: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(secret);
        h.finalize().into()
    }

    /// The principal these credentials were verified for lately.
    pub fn get(&self, name: &str, secret: &[u8], now: Instant) -> Option<usize> {
        let d = self.digest(name, secret);
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&d)
            .filter(|(_, at)| now.saturating_duration_since(*at) < REMEMBER_FOR)
            .map(|(i, _)| *i)
    }

    pub fn put(&self, name: &str, secret: &[u8], principal: usize, now: Instant) {
        let d = self.digest(name, secret);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, (_, at)| now.saturating_duration_since(*at) < REMEMBER_FOR);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(d, (principal, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_briefly_and_exactly() {
        let r = Remembered::new();
        let t0 = Instant::now();
        r.put("alice", b"pw", 3, t0);
        assert_eq!(r.get("alice", b"pw", t0), Some(3));
        assert_eq!(r.get("alice", b"pW", t0), None);
        // The length prefix keeps ("ab", "c") apart from ("a", "bc").
        r.put("ab", b"c", 1, t0);
        assert_eq!(r.get("a", b"bc", t0), None);
        assert_eq!(r.get("alice", b"pw", t0 + REMEMBER_FOR), None);
        for i in 0..MAX_REMEMBERED + 10 {
            r.put(&format!("u{i}"), b"x", i, t0);
        }
        assert!(r.seen.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
