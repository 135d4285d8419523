//! Upstream caches (`build-cache --upstream`, `verify --upstream`): whether a cache such as
//! cache.nixos.org serves a store path, judged from what reading its `<hashpart>.narinfo` gave.
//! Pure: the host reads (`crate::host::upstream`), this decides.
//!
//! A path counts as served only by a narinfo that parses, is for this store directory, names
//! this very store path (a narinfo is found by hash part alone: one for another name is not
//! this path) and, when keys are given, carries a valid signature by one of them: what Nix
//! itself needs to substitute the path from there. Every other answer says why not, so that a
//! hostile or broken upstream can never make a path look served: at worst a path is kept in
//! the cache that did not need to be.

use std::collections::HashMap;
use std::io;

use crate::narinfo::NarInfo;
use crate::signing::PublicKey;
use crate::store_path::{StoreDir, StorePath};

/// What an upstream said of one store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It serves the path: its narinfo, which names the path (and is signed by a given key).
    Served(Box<NarInfo>),
    /// No narinfo for the hash part.
    Absent,
    /// A narinfo for the path, but with no valid signature by any of the keys given.
    Unsigned,
    /// A narinfo that does not say the path is served: it names another path or store
    /// directory, does not parse, is not UTF-8, or is larger than a narinfo may be.
    Refused(String),
    /// The upstream could not be asked (a network error, a server error): nothing is known.
    Failed(String),
}

impl Answer {
    pub fn is_served(&self) -> bool {
        matches!(self, Answer::Served(_))
    }

    /// A short reason for a path not served, for messages (`None` when served).
    pub fn why_not(&self) -> Option<String> {
        match self {
            Answer::Served(_) => None,
            Answer::Absent => Some("no narinfo".into()),
            Answer::Unsigned => {
                Some("its narinfo has no valid signature by an upstream key".into())
            }
            Answer::Refused(why) => Some(format!("its narinfo is refused: {why}")),
            Answer::Failed(why) => Some(format!("cannot be asked: {why}")),
        }
    }
}

/// Judges what reading `path`'s narinfo from an upstream gave. `keys` empty: any narinfo for the
/// path counts; else only one with a valid signature by one of them.
pub fn judge_narinfo(
    path: &StorePath,
    store_dir: &StoreDir,
    read: io::Result<Option<Vec<u8>>>,
    keys: &[PublicKey],
) -> Answer {
    let bytes = match read {
        Ok(None) => return Answer::Absent,
        Ok(Some(bytes)) => bytes,
        // A body past the size limit is the upstream's doing, not the network's.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Answer::Refused(e.to_string()),
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Answer::Refused("not UTF-8".into());
    };
    let info = match NarInfo::parse(&text) {
        Ok(info) => info,
        Err(e) => return Answer::Refused(format!("malformed: {e}")),
    };
    if info.store_dir != *store_dir {
        return Answer::Refused(format!(
            "it is for the store directory {}, expected {store_dir}",
            info.store_dir
        ));
    }
    if info.store_path != *path {
        return Answer::Refused(format!(
            "it names {}, another store path with the same hash part",
            store_dir.display(&info.store_path)
        ));
    }
    if !keys.is_empty() {
        match info.check_signatures(keys) {
            Ok(check) if !check.valid.is_empty() => {}
            Ok(_) => return Answer::Unsigned,
            Err(e) => return Answer::Refused(format!("its fingerprint cannot be made: {e}")),
        }
    }
    Answer::Served(Box::new(info))
}

/// What the upstreams said of each store path asked about: the first that serves it, else the
/// most telling reason none does (a failure before a refusal before an unsigned narinfo before
/// absence: what could be fixed first).
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// The upstreams, as the user named them, in the order they are asked.
    names: Vec<String>,
    answers: HashMap<StorePath, (usize, Answer)>,
}

impl Answers {
    /// No upstream: nothing served.
    pub fn none() -> Answers {
        Answers::default()
    }

    /// The answers of these upstreams (none recorded yet).
    pub fn new(names: Vec<String>) -> Answers {
        Answers {
            names,
            answers: HashMap::new(),
        }
    }

    /// Whether any upstream was given.
    pub fn has_upstreams(&self) -> bool {
        !self.names.is_empty()
    }

    /// Records what upstream number `upstream` said of `path` (the upstreams asked in order).
    pub fn record(&mut self, path: StorePath, upstream: usize, answer: Answer) {
        let rank = |a: &Answer| match a {
            Answer::Served(_) => 4,
            Answer::Failed(_) => 3,
            Answer::Refused(_) => 2,
            Answer::Unsigned => 1,
            Answer::Absent => 0,
        };
        match self.answers.get(&path) {
            Some((_, held)) if rank(held) >= rank(&answer) => {}
            _ => {
                self.answers.insert(path, (upstream, answer));
            }
        }
    }

    /// The answer for `path` and the upstream that gave it; `None` if it was not asked about.
    pub fn get(&self, path: &StorePath) -> Option<(&str, &Answer)> {
        self.answers.get(path).map(|(u, a)| {
            let name = self.names.get(*u).map_or("an upstream", String::as_str);
            (name, a)
        })
    }

    /// Whether an upstream serves `path`.
    pub fn serves(&self, path: &StorePath) -> bool {
        self.get(path).is_some_and(|(_, a)| a.is_served())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretKey;

    const PATH: &str = "/nix/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public";
    const HASH: &str = "sha256:1mzr0yvnrq0jbs8dmlb0mbgk1y9a0qv7lmkyd50bfdgzyvz46s7h";

    fn narinfo(path: &str) -> NarInfo {
        NarInfo::parse(&format!(
            "StorePath: {path}\nURL: nar/x.nar\nCompression: none\nNarHash: {HASH}\nNarSize: 952\nReferences: \n"
        ))
        .unwrap()
    }

    fn judge(read: io::Result<Option<Vec<u8>>>, keys: &[PublicKey]) -> Answer {
        let dir = StoreDir::default();
        let (path, _) = dir.parse_path_prefix(PATH).unwrap();
        judge_narinfo(&path, &dir, read, keys)
    }

    fn bytes(info: &NarInfo) -> io::Result<Option<Vec<u8>>> {
        Ok(Some(info.to_text().into_bytes()))
    }

    #[test]
    fn served_only_by_a_narinfo_for_the_very_path() {
        assert!(judge(bytes(&narinfo(PATH)), &[]).is_served());
        assert_eq!(judge(Ok(None), &[]), Answer::Absent);
        let other = judge(
            bytes(&narinfo(
                "/nix/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-evil-0.9",
            )),
            &[],
        );
        assert!(
            matches!(&other, Answer::Refused(why) if why.contains("evil-0.9")),
            "{other:?}"
        );
        let elsewhere = judge(
            bytes(&narinfo(
                "/other/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public",
            )),
            &[],
        );
        assert!(
            matches!(&elsewhere, Answer::Refused(why) if why.contains("/other/store")),
            "{elsewhere:?}"
        );
        for garbage in [&b"<html>503</html>"[..], b"StorePath: x\n", b"\xff\xfe"] {
            let a = judge(Ok(Some(garbage.to_vec())), &[]);
            assert!(matches!(a, Answer::Refused(_)), "{a:?}");
        }
        let big = io::Error::new(io::ErrorKind::InvalidData, "larger than 1048576 bytes");
        assert!(matches!(judge(Err(big), &[]), Answer::Refused(_)));
        let down = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        assert!(matches!(judge(Err(down), &[]), Answer::Failed(_)));
    }

    #[test]
    fn with_keys_only_a_valid_signature_by_one_counts() {
        let good = SecretKey::from_seed("upstream-1", &[1; 32]);
        let other = SecretKey::from_seed("other-1", &[2; 32]);
        // A key of the same name that is not the one that signed.
        let impostor = SecretKey::from_seed("upstream-1", &[3; 32]);
        let mut signed = narinfo(PATH);
        signed.sign(&good).unwrap();
        let keys = [good.public_key()];
        assert!(judge(bytes(&signed), &keys).is_served());
        assert!(judge(bytes(&signed), &[other.public_key(), good.public_key()]).is_served());
        assert_eq!(
            judge(bytes(&signed), &[other.public_key()]),
            Answer::Unsigned
        );
        assert_eq!(
            judge(bytes(&signed), &[impostor.public_key()]),
            Answer::Unsigned
        );
        assert_eq!(judge(bytes(&narinfo(PATH)), &keys), Answer::Unsigned);
        // The signature is over the path's metadata: changed references, no longer valid.
        let mut tampered = signed.clone();
        tampered.nar_size += 1;
        assert_eq!(judge(bytes(&tampered), &keys), Answer::Unsigned);
    }

    #[test]
    fn answers_keep_the_first_server_else_the_most_telling_reason() {
        let dir = StoreDir::default();
        let (path, _) = dir.parse_path_prefix(PATH).unwrap();
        let names = (0..5).map(|i| format!("u{i}")).collect();
        let mut answers = Answers::new(names);
        assert!(answers.has_upstreams() && !Answers::none().has_upstreams());
        assert!(answers.get(&path).is_none());
        answers.record(path.clone(), 0, Answer::Absent);
        answers.record(path.clone(), 1, Answer::Failed("down".into()));
        answers.record(path.clone(), 2, Answer::Unsigned);
        assert_eq!(
            answers.get(&path),
            Some(("u1", &Answer::Failed("down".into())))
        );
        assert!(!answers.serves(&path));
        answers.record(path.clone(), 3, Answer::Served(Box::new(narinfo(PATH))));
        answers.record(path.clone(), 4, Answer::Served(Box::new(narinfo(PATH))));
        assert!(answers.serves(&path));
        assert_eq!(answers.get(&path).unwrap().0, "u3");
    }
}
