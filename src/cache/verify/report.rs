//! The report: assembled from the judgments (sorted, so every platform prints the same), and
//! rendered.

use super::{PathCheck, Problem, Report};

/// Assembles the report: problems sorted by path then kind, so every platform prints the same.
pub fn report(cache_info: Vec<Problem>, checks: Vec<PathCheck>, cross: Vec<Problem>) -> Report {
    let paths = checks.len() as u64;
    let checked_bytes = checks.iter().map(|c| c.checked_bytes).sum();
    let mut problems: Vec<Problem> = cache_info
        .into_iter()
        .chain(checks.into_iter().flat_map(|c| c.problems))
        .chain(cross)
        .collect();
    problems.sort_by(|a, b| (&a.path, a.kind, &a.message).cmp(&(&b.path, b.kind, &b.message)));
    problems.dedup();
    let ok = problems.iter().all(|p| p.kind.is_warning());
    Report {
        ok,
        paths,
        checked_bytes,
        problems,
    }
}
