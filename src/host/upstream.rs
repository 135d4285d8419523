//! Upstream caches opened and asked (`build-cache --upstream`, `verify --upstream`): any cache
//! [`open_read`] opens (an HTTP cache, a directory or `file://`, a bucket), its narinfo lookups
//! remembered as every remote read is (`super::lookups`, when the command turned it on), many
//! paths asked at once. What an answer means is `crate::cache::upstream`'s to say.
//!
//! An upstream whose `nix-cache-info` is missing, unreadable or for another store directory is
//! refused when it is opened, before any work: Nix would not substitute from it either, and a
//! mistyped URL should not quietly turn into a cache that holds everything.

use std::io;

use crate::cache::layout::CacheKey;
use crate::cache::location::CacheLocation;
use crate::cache::storage::StorageRead;
use crate::cache::upstream::{judge_narinfo, Answer, Answers};
use crate::cache::verify::{judge_cache_info, VerifyOptions};
use crate::host::concurrent::map_concurrently;
use crate::host::open::open_read;
use crate::narinfo::MAX_NARINFO_SIZE;
use crate::signing::PublicKey;
use crate::store_path::{StoreDir, StorePath};

/// The most of `nix-cache-info` read from an upstream.
const MAX_CACHE_INFO: u64 = crate::cache::verify::MAX_CACHE_INFO_SIZE as u64;

struct Upstream {
    /// As the user named it.
    name: String,
    storage: Box<dyn StorageRead>,
}

/// The upstream caches, asked in the order given (as Nix tries its substituters).
pub struct Upstreams {
    list: Vec<Upstream>,
    keys: Vec<PublicKey>,
    store_dir: StoreDir,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("names", &self.names())
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Upstreams {
    /// No upstream: nothing is served.
    pub fn none(store_dir: &StoreDir) -> Upstreams {
        Upstreams {
            list: Vec::new(),
            keys: Vec::new(),
            store_dir: store_dir.clone(),
        }
    }

    /// Opens each upstream and reads its `nix-cache-info`: an error says which upstream and
    /// what is wrong with it. `keys` empty: any narinfo naming a path counts; else only one
    /// signed by one of them.
    pub fn open(
        locations: &[CacheLocation],
        keys: Vec<PublicKey>,
        store_dir: &StoreDir,
    ) -> io::Result<Upstreams> {
        let mut list = Vec::new();
        for location in locations {
            let name = location.to_string();
            let at = |what: String| io::Error::other(format!("upstream cache {name}: {what}"));
            let storage = open_read(location).map_err(|e| at(format!("cannot open it: {e}")))?;
            let opts = VerifyOptions {
                store_dir: store_dir.clone(),
                ..VerifyOptions::default()
            };
            let read = storage.read_small(&CacheKey::CacheInfo, MAX_CACHE_INFO);
            if let Some(p) = judge_cache_info(read, &opts).first() {
                return Err(at(format!("{}: {}", p.path, p.message)));
            }
            list.push(Upstream { name, storage });
        }
        Ok(Upstreams {
            list,
            keys,
            store_dir: store_dir.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The upstreams' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|u| u.name.as_str()).collect()
    }

    /// Asks about `paths`, many at once: each upstream in turn until one serves the path.
    pub fn ask(&self, paths: &[StorePath]) -> Answers {
        let mut answers = Answers::new(self.names().into_iter().map(String::from).collect());
        if self.list.is_empty() || paths.is_empty() {
            return answers;
        }
        let at_once = self
            .list
            .iter()
            .map(|u| u.storage.requests_in_flight())
            .max()
            .unwrap_or(1);
        let said = map_concurrently(paths.to_vec(), at_once, |path| {
            let mut said = Vec::new();
            for (i, upstream) in self.list.iter().enumerate() {
                let answer = self.ask_one(upstream, &path);
                let served = answer.is_served();
                said.push((i, answer));
                if served {
                    break;
                }
            }
            (path, said)
        });
        for (path, said) in said {
            for (i, answer) in said {
                answers.record(path.clone(), i, answer);
            }
        }
        answers
    }

    fn ask_one(&self, upstream: &Upstream, path: &StorePath) -> Answer {
        let read = CacheKey::narinfo(path.hash_part())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|key| upstream.storage.read_small(&key, MAX_NARINFO_SIZE as u64));
        judge_narinfo(path, &self.store_dir, read, &self.keys)
    }
}
