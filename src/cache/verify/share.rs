//! Paths of one verification shared between threads that cannot share memory (wasm instances
//! in Node workers or browser workers): each thread claims paths a few at a time, by index into
//! the listing the leading thread made, and the others send their [`PathCheck`]s back to it as
//! text. The leading thread checks itself any path whose check never came back, so a helper
//! that dies, or sends what it should not, costs time, not a wrong report.

use std::ops::Range;

use super::judge::Unparsed;
use super::{PathCheck, Problem};
use crate::narinfo::NarInfo;

/// How a verification's paths are handed out, and how the checks other threads made come back.
#[allow(async_fn_in_trait)]
pub trait PathShare {
    /// Called once, with the narinfo names about to be checked (the helpers' work list).
    fn begin(&self, names: &[String]);
    /// The next paths this thread checks: indexes into `names`, empty when none are left.
    fn claim(&self) -> Range<usize>;
    /// The checks of the others that have arrived, without waiting (text from [`encode_checks`]).
    fn arrived(&self) -> Vec<String>;
    /// Waits for the others to end; the checks that arrived since the last look.
    async fn rest(&self) -> Vec<String>;
}

/// One thread alone: every path is its own.
pub struct Alone {
    total: std::cell::Cell<Option<usize>>,
}

impl Alone {
    pub fn new() -> Alone {
        Alone {
            total: std::cell::Cell::new(None),
        }
    }
}

impl Default for Alone {
    fn default() -> Alone {
        Alone::new()
    }
}

impl PathShare for Alone {
    fn begin(&self, names: &[String]) {
        self.total.set(Some(names.len()));
    }
    fn claim(&self) -> Range<usize> {
        0..self.total.take().unwrap_or(0)
    }
    fn arrived(&self) -> Vec<String> {
        Vec::new()
    }
    async fn rest(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A path's check as it travels between threads: the narinfo as its text (which parses back to
/// the same values), the rest as it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    narinfo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash_part: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    unparsed: bool,
    problems: Vec<Problem>,
    checked_bytes: u64,
}

/// Checks of the paths at the given indexes, as text for another thread.
pub fn encode_checks<'a>(checks: impl IntoIterator<Item = (usize, &'a PathCheck)>) -> String {
    let wire: Vec<Wire> = checks
        .into_iter()
        .map(|(index, c)| Wire {
            index,
            narinfo: c.narinfo.as_ref().map(NarInfo::to_text),
            hash_part: c.unparsed.as_ref().and_then(|u| u.hash_part.clone()),
            url: c.unparsed.as_ref().and_then(|u| u.url.clone()),
            unparsed: c.unparsed.is_some(),
            problems: c.problems.clone(),
            checked_bytes: c.checked_bytes,
        })
        .collect();
    serde_json::to_string(&wire).unwrap_or_default()
}

/// What [`encode_checks`] wrote, or why it is not that.
pub fn decode_checks(text: &str) -> Result<Vec<(usize, PathCheck)>, String> {
    let wire: Vec<Wire> =
        serde_json::from_str(text).map_err(|e| format!("a shared check is not one: {e}"))?;
    wire.into_iter()
        .map(|w| {
            let narinfo = match &w.narinfo {
                Some(text) => Some(NarInfo::parse(text).map_err(|e| {
                    format!(
                        "path {}: a shared check's narinfo does not parse: {e}",
                        w.index
                    )
                })?),
                None => None,
            };
            let unparsed = w.unparsed.then_some(Unparsed {
                hash_part: w.hash_part,
                url: w.url,
            });
            let check = PathCheck {
                narinfo,
                unparsed,
                problems: w.problems,
                checked_bytes: w.checked_bytes,
            };
            Ok((w.index, check))
        })
        .collect()
}

/// The checks of `total` paths as they come in, from this thread or from others, each index
/// taken once.
pub(super) struct Collected {
    checks: Vec<Option<PathCheck>>,
    filled: usize,
}

impl Collected {
    pub(super) fn new(total: usize) -> Collected {
        Collected {
            checks: vec![None; total],
            filled: 0,
        }
    }

    /// Takes another thread's `check` for path `index`: false (and nothing changes) if the
    /// index is out of range or already has its check.
    fn put(&mut self, index: usize, check: PathCheck) -> bool {
        match self.checks.get_mut(index) {
            Some(slot @ None) => {
                *slot = Some(check);
                self.filled += 1;
                true
            }
            _ => false,
        }
    }

    /// Takes this thread's own `check` for path `index`, in place of any other's.
    pub(super) fn put_own(&mut self, index: usize, check: PathCheck) {
        if let Some(slot) = self.checks.get_mut(index) {
            if slot.replace(check).is_none() {
                self.filled += 1;
            }
        }
    }

    /// Takes the checks of other threads' text; gives the file bytes the new ones read. Text
    /// that is not what [`encode_checks`] writes is dropped whole (its paths are checked here
    /// instead).
    pub(super) fn put_shared(&mut self, text: &str) -> u64 {
        let Ok(checks) = decode_checks(text) else {
            return 0;
        };
        let mut bytes = 0u64;
        for (index, check) in checks {
            let read = check.checked_bytes;
            if self.put(index, check) {
                bytes = bytes.saturating_add(read);
            }
        }
        bytes
    }

    pub(super) fn filled(&self) -> usize {
        self.filled
    }

    /// The indexes still without a check.
    pub(super) fn missing(&self) -> Vec<usize> {
        (0..self.checks.len())
            .filter(|&i| self.checks[i].is_none())
            .collect()
    }

    /// Every check in index order (a missing one: none, which callers fill first).
    pub(super) fn into_checks(self) -> Vec<PathCheck> {
        self.checks.into_iter().flatten().collect()
    }
}
