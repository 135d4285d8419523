//! The problems a report lists: at most a limit of them, the first in the report's order, the
//! others counted by kind. A cache with millions of problems (every NAR damaged, thousands of
//! references missing from every narinfo) then costs the verifier the same memory as one with a
//! limit's worth, natively and in wasm, and the report is the same whatever order the problems
//! were found in (paths checked concurrently finish in any order).
//!
//! Problems kept are compared whole (two identical problems are listed once, as the report always
//! did); problems beyond the limit are counted, not compared.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::{Problem, ProblemKind};

/// How many problems a report lists unless told otherwise (about 50 MiB of them).
pub const DEFAULT_MAX_PROBLEMS: usize = 100_000;

/// The problems of a report as they are found: the first `limit` in the report's order (by path,
/// kind, message, then the values compared), the others counted by kind.
#[derive(Debug)]
pub struct KeptProblems {
    limit: usize,
    kept: BTreeSet<InOrder>,
    omitted: BTreeMap<ProblemKind, u64>,
}

/// A problem ordered as the report lists them.
#[derive(Debug, PartialEq, Eq)]
struct InOrder(Problem);

impl Ord for InOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        fn key(p: &Problem) -> (&str, ProblemKind, &str, Option<&str>, Option<&str>) {
            (
                p.path.as_str(),
                p.kind,
                p.message.as_str(),
                p.expected.as_deref(),
                p.found.as_deref(),
            )
        }
        key(&self.0).cmp(&key(&other.0))
    }
}

impl PartialOrd for InOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl KeptProblems {
    /// Keeps at most `limit` problems; 0: every one.
    pub fn new(limit: usize) -> KeptProblems {
        KeptProblems {
            limit: if limit == 0 { usize::MAX } else { limit },
            kept: BTreeSet::new(),
            omitted: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, problem: Problem) {
        let problem = InOrder(problem);
        if self.kept.len() < self.limit {
            self.kept.insert(problem);
            return;
        }
        let beyond = match self.kept.last() {
            Some(last) => problem > *last,
            None => true,
        };
        if beyond {
            *self.omitted.entry(problem.0.kind).or_default() += 1;
        } else if self.kept.insert(problem) {
            if let Some(last) = self.kept.pop_last() {
                *self.omitted.entry(last.0.kind).or_default() += 1;
            }
        }
    }

    /// The problems kept, in the report's order, and how many of each kind were not.
    pub fn into_parts(self) -> (Vec<Problem>, BTreeMap<ProblemKind, u64>) {
        (self.kept.into_iter().map(|p| p.0).collect(), self.omitted)
    }
}

impl Extend<Problem> for KeptProblems {
    fn extend<I: IntoIterator<Item = Problem>>(&mut self, problems: I) {
        for p in problems {
            self.push(p);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [ProblemKind; 4] = [
        ProblemKind::MissingNar,
        ProblemKind::MissingReference,
        ProblemKind::OrphanNar,
        ProblemKind::BadSignature,
    ];

    fn problem((path, kind, message): (u8, usize, u8)) -> Problem {
        Problem::new(
            KINDS[kind],
            format!("/nix/store/p{path}"),
            format!("m{message}"),
        )
    }

    proptest! {
        /// Whatever the order problems come in, the kept ones are the first `limit` of the whole
        /// sorted and deduplicated list, and the omitted counts are the kinds of all the others.
        #[test]
        fn keeps_the_first_in_order_and_counts_the_rest(
            found in proptest::collection::vec((0u8..20, 0usize..4, 0u8..3), 0..200),
            limit in 0usize..50,
        ) {
            let mut kept = KeptProblems::new(limit);
            kept.extend(found.iter().copied().map(problem));
            let (listed, omitted) = kept.into_parts();

            let mut all: Vec<InOrder> = found.iter().copied().map(problem).map(InOrder).collect();
            all.sort();
            let found_count = all.len() as u64;
            all.dedup();
            let limit = if limit == 0 { usize::MAX } else { limit };
            let expected: Vec<Problem> = all.iter().take(limit).map(|p| p.0.clone()).collect();
            prop_assert_eq!(&listed, &expected);
            // Beyond the limit, duplicates are counted, not compared: at least each distinct
            // problem not listed, at most every one found that is not listed.
            let total_omitted: u64 = omitted.values().sum();
            let distinct_omitted = (all.len() - expected.len()) as u64;
            let listed_found = found
                .iter()
                .filter(|f| listed.contains(&problem(**f)))
                .count() as u64;
            prop_assert!(distinct_omitted <= total_omitted, "{} > {}", distinct_omitted, total_omitted);
            prop_assert!(total_omitted <= found_count - listed_found);
            if found_count == all.len() as u64 {
                let mut by_kind: BTreeMap<ProblemKind, u64> = BTreeMap::new();
                for p in all.iter().skip(limit) {
                    *by_kind.entry(p.0.kind).or_default() += 1;
                }
                prop_assert_eq!(omitted, by_kind);
            }
        }
    }
}
