//! Many small cache files in one response, for the inspector's verifier (a browser pays a few
//! milliseconds per request; 50 000 small NARs one by one take minutes). Nix never asks for it.
//!
//! `GET /_nar-tool/files?key=K&key=K…[&max-file=N][&max-bytes=N]` (under a named cache,
//! `/NAME/_nar-tool/files`): up to [`MAX_KEYS`] keys of the cache layout (`nar/…`, `….ls`, any key
//! a plain `GET` would serve, by the same rule: [`CacheKey::parse`]), percent-escaped as in a form.
//! The answer (`application/octet-stream`, 200 unless the request itself is bad: 400) is, in
//! order:
//!
//! ```text
//! MAGIC                         the 16 bytes "nar-tool files 1" (`MAGIC`)
//! per key, in the order asked:  status (1 byte), length (8 bytes, big-endian), `length` bytes
//! end:                          0xFF, then the number of records before it (8 bytes, big-endian)
//! ```
//!
//! Status: [`SENT`] (the file's bytes follow, `length` of them, possibly 0: an empty file),
//! [`ABSENT`] (what a `GET` answers 404: not there, or not something served, such as a FIFO or a
//! symlink leading out), [`NOT_BUNDLED`] (larger than `max-file`, or past `max-bytes` of files in
//! this response: ask for it by itself), [`NOT_A_KEY`] (not a key of the layout: a `GET` would
//! get 400 or 404), [`UNREADABLE`] (an error reading it: a `GET` would get 500). Every status but
//! [`SENT`] has length 0. A response that ends before its end record (the connection closed, a
//! file shrank while being sent) is incomplete: its records so far are good, the rest unknown.
//!
//! `max-file` (default [`DEFAULT_MAX_FILE`]) and `max-bytes` (default and most [`MAX_BYTES`]) are
//! capped, whatever is asked. The body is made a piece of about [`CHUNK`] bytes at a time as the
//! client takes it, like any file body (the files opened one after another, never ahead of the
//! client): a connection holds one piece, and a slow reader is cut by the same rate rule.

use super::*;

/// The most keys one request may name.
pub(super) const MAX_KEYS: usize = 128;
/// Files larger than this are not bundled unless the request says `max-file`.
pub(super) const DEFAULT_MAX_FILE: u64 = 64 << 10;
/// The most `max-file` may be.
pub(super) const MAX_FILE: u64 = 1 << 20;
/// The most file bytes one response carries (and the default `max-bytes`).
pub(super) const MAX_BYTES: u64 = 8 << 20;

/// What the body starts with.
pub(super) const MAGIC: &[u8; 16] = b"nar-tool files 1";
/// The file's bytes follow.
pub(super) const SENT: u8 = 0;
/// Not in the cache (or not something served: a FIFO, a symlink leading out).
pub(super) const ABSENT: u8 = 1;
/// Too large for this response: fetch it by itself.
pub(super) const NOT_BUNDLED: u8 = 2;
/// Not a key of the cache layout.
pub(super) const NOT_A_KEY: u8 = 3;
/// It could not be read.
pub(super) const UNREADABLE: u8 = 4;
/// The end record's mark.
pub(super) const END: u8 = 0xFF;

/// What a request asks for: its keys (or why each is not one) and its limits.
#[derive(Debug)]
pub(super) struct Ask {
    keys: Vec<Option<CacheKey>>,
    max_file: u64,
    max_bytes: u64,
}

impl Ask {
    /// Parses a query; `Err`: why the request as a whole is refused.
    pub(super) fn parse(query: &str) -> Result<Ask, String> {
        let mut ask = Ask {
            keys: Vec::new(),
            max_file: DEFAULT_MAX_FILE,
            max_bytes: MAX_BYTES,
        };
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let number = |cap: u64| -> Result<u64, String> {
                let n: u64 = v.parse().map_err(|_| format!("bad {k}: {v:?}"))?;
                Ok(n.min(cap))
            };
            match k {
                "key" => {
                    if ask.keys.len() == MAX_KEYS {
                        return Err(format!("more than {MAX_KEYS} keys in one request"));
                    }
                    let key = policy::form_decode(v).and_then(|name| CacheKey::parse(&name).ok());
                    ask.keys.push(key);
                }
                "max-file" => ask.max_file = number(MAX_FILE)?,
                "max-bytes" => ask.max_bytes = number(MAX_BYTES)?,
                _ => {}
            }
        }
        Ok(ask)
    }
}

/// The body being made: the keys left, the file being sent, what is left of the byte budget.
pub(super) struct Bundle {
    cache: Arc<dyn StorageRead>,
    keys: std::vec::IntoIter<Option<CacheKey>>,
    max_file: u64,
    budget: u64,
    /// The file being sent and how many of its bytes are still to send.
    current: Option<(Box<dyn ReadSeek>, u64)>,
    records: u64,
    started: bool,
    ended: bool,
}

impl Bundle {
    pub(super) fn new(cache: Arc<dyn StorageRead>, ask: Ask) -> Bundle {
        Bundle {
            cache,
            keys: ask.keys.into_iter(),
            max_file: ask.max_file,
            budget: ask.max_bytes,
            current: None,
            records: 0,
            started: false,
            ended: false,
        }
    }

    /// A key's status, and its file when it is sent.
    fn open(&mut self, key: Option<CacheKey>) -> (u8, Option<Object>) {
        let Some(key) = key else {
            return (NOT_A_KEY, None);
        };
        match self.cache.open(&key) {
            Ok(None) => (ABSENT, None),
            Ok(Some(o)) if o.meta.size > self.max_file || o.meta.size > self.budget => {
                (NOT_BUNDLED, None)
            }
            Ok(Some(o)) => {
                self.budget -= o.meta.size;
                (SENT, Some(o))
            }
            Err(e) if is_refused(&e) => (ABSENT, None),
            Err(_) => (UNREADABLE, None),
        }
    }
}

/// A header: the status and a length.
fn record(out: &mut Vec<u8>, status: u8, len: u64) {
    out.push(status);
    out.extend_from_slice(&len.to_be_bytes());
}

impl Pieces for Bundle {
    fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(CHUNK + 2 * 9 + MAGIC.len());
        if !self.started {
            self.started = true;
            out.extend_from_slice(MAGIC);
        }
        while out.len() < CHUNK {
            if let Some((file, left)) = &mut self.current {
                let n = (*left).min((CHUNK - out.len()) as u64);
                let start = out.len();
                out.resize(start + n as usize, 0);
                file.read_exact(&mut out[start..]).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::new(e.kind(), "a file shrank while being sent")
                    } else {
                        e
                    }
                })?;
                *left -= n;
                if *left == 0 {
                    self.current = None;
                }
                continue;
            }
            let Some(key) = self.keys.next() else {
                record(&mut out, END, self.records);
                self.ended = true;
                break;
            };
            self.records += 1;
            match self.open(key) {
                (SENT, Some(object)) => {
                    record(&mut out, SENT, object.meta.size);
                    if object.meta.size > 0 {
                        self.current = Some((object.body, object.meta.size));
                    }
                }
                (status, _) => record(&mut out, status, 0),
            }
        }
        Ok(Some(out))
    }
}

impl Shelf {
    /// The reply to `GET /_nar-tool/files?…`.
    pub(super) fn bundle(&self, query: &str) -> Reply {
        match Ask::parse(query) {
            Ok(ask) => Reply {
                status: 200,
                headers: vec![
                    ("Content-Type", "application/octet-stream".into()),
                    ("Cache-Control", "no-cache".into()),
                ],
                body: Body::Pieces(Box::new(Bundle::new(self.cache.clone(), ask))),
            },
            Err(why) => Reply::text(400, &format!("{why}\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::storage::memory::MemoryStorage;
    use crate::cache::storage::StorageWrite;

    const NAR_A: &str = "nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz";
    const NAR_B: &str = "nar/0mgzsr0wvqlfvsvl79xcz3yc1pnsfhbh0cl60ydxyr4wg0lbcmv3.nar";

    /// The records of a whole body: (status, bytes), and the count the end record gives.
    fn records(body: &[u8]) -> (Vec<(u8, Vec<u8>)>, u64) {
        assert_eq!(&body[..16], MAGIC);
        let mut at = 16;
        let mut out = Vec::new();
        loop {
            let status = body[at];
            let len = u64::from_be_bytes(body[at + 1..at + 9].try_into().unwrap());
            at += 9;
            if status == END {
                assert_eq!(at, body.len(), "nothing after the end record");
                return (out, len);
            }
            out.push((status, body[at..at + len as usize].to_vec()));
            at += len as usize;
        }
    }

    fn whole(mut b: Bundle) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(piece) = b.next_piece().unwrap() {
            assert!(
                piece.len() <= CHUNK + 2 * 9 + MAGIC.len(),
                "one piece at a time"
            );
            body.extend(piece);
        }
        body
    }

    fn cache() -> Arc<dyn StorageRead> {
        let m = MemoryStorage::default();
        m.put(&CacheKey::parse(NAR_A).unwrap(), &[7; 100_000])
            .unwrap();
        m.put(&CacheKey::parse(NAR_B).unwrap(), b"").unwrap();
        Arc::new(m)
    }

    #[test]
    fn records_in_order_each_status_told_apart() {
        let q = format!(
            "key={NAR_B}&key=nar%2Fx.nar&key=..%2Fetc%2Fpasswd&key={NAR_A}&key={}&max-file=200000",
            NAR_A.replace('1', "2")
        );
        let (recs, n) = records(&whole(Bundle::new(cache(), Ask::parse(&q).unwrap())));
        assert_eq!(n, 5);
        let statuses: Vec<u8> = recs.iter().map(|r| r.0).collect();
        assert_eq!(statuses, [SENT, ABSENT, NOT_A_KEY, SENT, ABSENT]);
        assert!(recs[0].1.is_empty(), "an empty file is sent, empty");
        assert_eq!(recs[3].1, vec![7; 100_000], "a file over several pieces");
    }

    #[test]
    fn large_files_and_the_budget_are_left_to_single_requests() {
        let q = format!("key={NAR_A}&key={NAR_B}");
        let (recs, _) = records(&whole(Bundle::new(cache(), Ask::parse(&q).unwrap())));
        assert_eq!(
            (recs[0].0, recs[1].0),
            (NOT_BUNDLED, SENT),
            "over the default max-file"
        );
        let q = format!("key={NAR_A}&max-file=999999999999&max-bytes=99999");
        let ask = Ask::parse(&q).unwrap();
        assert_eq!((ask.max_file, ask.max_bytes), (MAX_FILE, 99_999));
        let (recs, _) = records(&whole(Bundle::new(cache(), ask)));
        assert_eq!(recs[0].0, NOT_BUNDLED, "past the response's budget");
    }

    #[test]
    fn bad_requests_are_refused_whole() {
        let many = vec![format!("key={NAR_A}"); MAX_KEYS + 1].join("&");
        assert!(Ask::parse(&many).unwrap_err().contains("more than"));
        assert!(Ask::parse(&many[..many.rfind('&').unwrap()]).is_ok());
        assert!(Ask::parse("max-file=-1").is_err());
        assert!(Ask::parse("max-bytes=x").is_err());
        let (recs, n) = records(&whole(Bundle::new(cache(), Ask::parse("").unwrap())));
        assert_eq!((recs.len(), n), (0, 0), "no key: an empty bundle");
    }
}
