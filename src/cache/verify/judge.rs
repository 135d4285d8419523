//! The pure judgments, layer by layer: what was read (bytes, sizes, findings, or why they could
//! not be read) in, problems out. Both drivers ([`super::pull`], [`super::push`]) call these, so
//! they give the same report.

use std::collections::{BTreeSet, HashSet};
use std::io;

use super::{PathCheck, Problem, ProblemKind, VerifyOptions};
use crate::cache::graph::Graph;
use crate::cache::policy::render_chain;
use crate::cache::upstream::{Answer, Answers};
use crate::cache_info::CacheInfo;
use crate::compression::Compression;
use crate::nar::NarError;
use crate::narinfo::NarInfo;
use crate::signing::PublicKey;
use crate::store_path::StorePath;

/// What a malformed narinfo still tells: its hash part (from the file name) and the `URL:` line.
#[derive(Debug, Clone, Default)]
pub struct Unparsed {
    pub hash_part: Option<String>,
    pub url: Option<String>,
}

impl Unparsed {
    fn new(file_name: &str, text: Option<&str>) -> Unparsed {
        Unparsed {
            hash_part: file_name.strip_suffix(".narinfo").map(str::to_string),
            url: text.and_then(|t| {
                t.split('\n')
                    .find_map(|l| l.strip_prefix("URL: "))
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            }),
        }
    }
}

/// Judges `nix-cache-info`'s bytes (or why they could not be read).
pub fn judge_cache_info(read: io::Result<Option<Vec<u8>>>, opts: &VerifyOptions) -> Vec<Problem> {
    let problem =
        |message: String| Problem::new(ProblemKind::BadCacheInfo, "nix-cache-info", message);
    let p = |message: String| vec![problem(message)];
    match read {
        Err(e) => p(format!("cannot be read: {e}")),
        Ok(None) => {
            p("missing: not a binary cache (expected a nix-cache-info file at the root)".into())
        }
        Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| CacheInfo::parse(t).map_err(|e| e.to_string()))
        {
            Err(e) => p(format!("unparsable: {e}")),
            Ok(info) => match info.store_dir {
                Some(d) if d != opts.store_dir.as_str() => vec![problem(format!(
                    "StoreDir is {d:?}, expected {:?}",
                    opts.store_dir.as_str()
                ))
                .comparing(&opts.store_dir, Some(d))],
                _ => Vec::new(),
            },
        },
    }
}

/// Whether a narinfo URL stays inside the cache: relative, no scheme, no `..`, no oddities.
pub fn url_is_inside(url: &str) -> Result<(), &'static str> {
    crate::cache::layout::resolve_url(url).map(drop)
}

/// The first layer: a narinfo file's bytes (or why they could not be read) → its problems, and
/// the parsed narinfo if there is one (then its file is to be checked).
/// A listed name that is not `<hashpart>.narinfo` (`bogus.narinfo`): judged by its name alone,
/// never read, the same way by every driver.
pub fn judge_narinfo_name(file_name: &str) -> Option<PathCheck> {
    let why = match crate::cache::layout::CacheKey::parse(file_name) {
        Ok(crate::cache::layout::CacheKey::NarInfo(_)) => return None,
        Ok(_) => "not a narinfo".to_string(),
        Err(e) => e.why.to_string(),
    };
    let mut out = PathCheck::default();
    out.problems.push(Problem::new(
        ProblemKind::MalformedNarinfo,
        file_name,
        format!("not a narinfo name ({why}); not read"),
    ));
    out.unparsed = Some(Unparsed::new(file_name, None));
    Some(out)
}

pub fn judge_narinfo(
    file_name: &str,
    read: io::Result<Option<Vec<u8>>>,
    opts: &VerifyOptions,
) -> PathCheck {
    let mut out = PathCheck::default();
    let mut problem = |kind: ProblemKind, path: &str, message: String| {
        out.problems.push(Problem::new(kind, path, message))
    };
    let text = match read {
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                problem(
                    ProblemKind::MalformedNarinfo,
                    file_name,
                    "not UTF-8 text".into(),
                );
                let text = String::from_utf8_lossy(e.as_bytes());
                out.unparsed = Some(Unparsed::new(file_name, Some(&text)));
                return out;
            }
        },
        Ok(None) => {
            problem(
                ProblemKind::CheckFailed,
                file_name,
                "vanished while verifying".into(),
            );
            return out;
        }
        Err(e) => {
            let kind = if e.kind() == io::ErrorKind::InvalidData {
                ProblemKind::MalformedNarinfo
            } else {
                ProblemKind::CheckFailed
            };
            problem(kind, file_name, format!("cannot be read: {e}"));
            if kind == ProblemKind::MalformedNarinfo {
                out.unparsed = Some(Unparsed::new(file_name, None));
            }
            return out;
        }
    };
    let info = match NarInfo::parse(&text) {
        Ok(i) => i,
        Err(e) => {
            problem(ProblemKind::MalformedNarinfo, file_name, e.to_string());
            out.unparsed = Some(Unparsed::new(file_name, Some(&text)));
            return out;
        }
    };
    let path = info.path();
    if info.store_dir != opts.store_dir {
        out.problems.push(
            Problem::new(
                ProblemKind::MalformedNarinfo,
                &path,
                format!(
                    "StorePath is in {}, the cache is for {}",
                    info.store_dir, opts.store_dir
                ),
            )
            .comparing(&opts.store_dir, Some(&info.store_dir)),
        );
    }
    let expected_name = format!("{}.narinfo", info.store_path.hash_part());
    if file_name != expected_name {
        out.problems.push(
            Problem::new(
                ProblemKind::HashPartMismatch,
                &path,
                format!("file {file_name} holds the narinfo of {path} (expected {expected_name})"),
            )
            .comparing(&expected_name, Some(file_name)),
        );
    }
    if !opts.trusted_keys.is_empty() {
        if let Some((kind, message)) = judge_signatures(&info, &opts.trusted_keys) {
            out.problems.push(Problem::new(kind, &path, message));
        }
    }
    out.narinfo = Some(info);
    out
}

fn judge_signatures(info: &NarInfo, trusted: &[PublicKey]) -> Option<(ProblemKind, String)> {
    match info.check_signatures(trusted) {
        Err(e) => Some((ProblemKind::BadSignature, e.to_string())),
        Ok(check) if !check.invalid.is_empty() => Some((
            ProblemKind::BadSignature,
            format!(
                "signature by {} does not verify: the narinfo was changed after signing",
                check.invalid.join(", ")
            ),
        )),
        Ok(check) if check.valid.is_empty() => {
            let names: Vec<&str> = trusted.iter().map(|k| k.name()).collect();
            let found = if info.sigs.is_empty() {
                "no signatures".to_string()
            } else {
                format!(
                    "signatures by {}",
                    info.sigs
                        .iter()
                        .map(|s| s.key_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Some((
                ProblemKind::Untrusted,
                format!(
                    "no valid signature by a trusted key (expected one of {}, found {found})",
                    names.join(", ")
                ),
            ))
        }
        Ok(_) => None,
    }
}

/// A problem found in a path's file (the path is the narinfo's).
fn file_problem(info: &NarInfo, kind: ProblemKind, message: String) -> Problem {
    Problem::new(kind, info.path(), message)
}

/// The second layer: the URL must stay inside the cache (else the file is not even looked at).
pub fn judge_url(info: &NarInfo) -> Option<Problem> {
    url_is_inside(&info.url).err().map(|why| {
        file_problem(
            info,
            ProblemKind::UrlOutsideCache,
            format!(
                "URL {:?} resolves outside the cache ({why}); not read",
                info.url
            ),
        )
    })
}

/// The file's presence and size (`Ok(None)`: absent).
pub fn judge_size(info: &NarInfo, size: &io::Result<Option<u64>>) -> Option<Problem> {
    match size {
        Ok(Some(size)) => match info.file_size {
            Some(expected) if expected != *size => Some(
                file_problem(
                    info,
                    ProblemKind::FileSizeMismatch,
                    format!(
                        "{}: FileSize is {expected}, the file has {size} bytes",
                        info.url
                    ),
                )
                .comparing(expected, Some(size)),
            ),
            _ => None,
        },
        Ok(None) => Some(missing(info)),
        Err(e) => Some(unreadable(info, e)),
    }
}

/// The file is absent.
pub fn missing(info: &NarInfo) -> Problem {
    file_problem(
        info,
        ProblemKind::MissingNar,
        format!("{} does not exist", info.url),
    )
}

/// The file could not be looked at (or its compression is not one that can be checked).
pub fn unreadable(info: &NarInfo, why: impl std::fmt::Display) -> Problem {
    file_problem(
        info,
        ProblemKind::CheckFailed,
        format!("{}: {why}", info.url),
    )
}

/// The compression method a narinfo names, or why it cannot be checked.
pub fn judge_compression(info: &NarInfo) -> Result<Compression, Problem> {
    info.compression.method().map_err(|e| unreadable(info, e))
}

/// What reading a NAR file found, however it was read (pulled natively, pushed in wasm).
pub struct ContentFindings {
    pub file_hash: crate::hash::Hash,
    pub file_bytes: u64,
    /// The file could not be read to its end.
    pub read_error: Option<String>,
    pub(super) nar: Result<(crate::hash::Hash, u64), NarFailure>,
}

/// The last layers: file hash, then decompression and NAR structure, then NAR size and hash.
pub fn judge_contents(info: &NarInfo, found: &ContentFindings) -> Option<Problem> {
    let url = &info.url;
    let problem = |kind: ProblemKind, message: String| file_problem(info, kind, message);
    if let Some(e) = &found.read_error {
        return Some(unreadable(info, format_args!("read error: {e}")));
    }
    if let Some(expected) = &info.file_hash {
        if *expected != found.file_hash {
            let file_hash = found
                .file_hash
                .to_prefixed(crate::hash::Encoding::Nixbase32);
            return Some(
                problem(
                    ProblemKind::FileHashMismatch,
                    format!("{url}: FileHash is {expected}, the file hashes to {file_hash}"),
                )
                .comparing(expected, Some(file_hash)),
            );
        }
    }
    Some(match &found.nar {
        // The decoders' own words differ between the native and the pure ones: the verdict
        // must not, so it names only the method.
        Err(NarFailure::Decompress) => problem(
            ProblemKind::MalformedNar,
            format!(
                "{url}: does not decompress as {}: the compressed data is corrupt or cut short",
                info.compression
            ),
        ),
        Err(NarFailure::TooLong) => problem(
            ProblemKind::NarSizeMismatch,
            format!("{url}: NarSize is {}, the NAR is longer", info.nar_size),
        )
        .comparing(info.nar_size, None::<u64>),
        Err(NarFailure::Nar(e)) => problem(
            ProblemKind::MalformedNar,
            format!("{url}: not a valid NAR: {e}"),
        ),
        Ok((_, nar_size)) if *nar_size != info.nar_size => problem(
            ProblemKind::NarSizeMismatch,
            format!(
                "{url}: NarSize is {}, the NAR has {nar_size} bytes",
                info.nar_size
            ),
        )
        .comparing(info.nar_size, Some(nar_size)),
        Ok((nar_hash, _)) if nar_hash.algo() != info.nar_hash.algo() => problem(
            ProblemKind::CheckFailed,
            format!(
                "NarHash uses {}, only sha256 is checked",
                info.nar_hash.algo()
            ),
        )
        .comparing(nar_hash.algo(), Some(info.nar_hash.algo())),
        Ok((nar_hash, _)) if *nar_hash != info.nar_hash => problem(
            ProblemKind::NarHashMismatch,
            format!(
                "{url}: NarHash is {}, the NAR hashes to {nar_hash}",
                info.nar_hash
            ),
        )
        .comparing(&info.nar_hash, Some(nar_hash)),
        Ok(_) => return None,
    })
}

/// Why a NAR stream failed its check.
#[derive(Debug)]
pub(super) enum NarFailure {
    /// The file does not decompress.
    Decompress,
    /// It decompresses to more than NarSize.
    TooLong,
    /// It decompresses, but not to a valid NAR.
    Nar(NarError),
}

/// The checks across paths: references without narinfos, and NAR files no narinfo names.
pub fn cross_check(checks: &[PathCheck], nar_files: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    cross_check_upstream(checks, nar_files, &Answers::none(), &mut problems);
    problems
}

/// The references no narinfo of the cache names (nor a malformed one by its file name), sorted:
/// what upstream caches are asked about.
pub fn missing_references(checks: &[PathCheck]) -> Vec<StorePath> {
    let present: HashSet<&StorePath> = checks
        .iter()
        .filter_map(|c| c.narinfo.as_ref())
        .map(|i| &i.store_path)
        .collect();
    // A malformed narinfo is reported as such, not again as missing for its referrers.
    let unparsed: HashSet<&str> = checks
        .iter()
        .filter_map(|c| c.unparsed.as_ref()?.hash_part.as_deref())
        .collect();
    let missing: BTreeSet<&StorePath> = checks
        .iter()
        .filter_map(|c| c.narinfo.as_ref())
        .flat_map(|i| &i.references)
        .filter(|r| !present.contains(r) && !unparsed.contains(r.hash_part()))
        .collect();
    missing.into_iter().cloned().collect()
}

/// [`cross_check`], a missing reference an upstream serves counting as present (`upstream`: what
/// the upstreams said of [`missing_references`]), its problems added to `problems` as they are
/// found (a [`super::KeptProblems`] keeps memory bounded however many there are); returns the
/// number of references found upstream. One an upstream could not be asked about is a
/// `check-failed`, not a `missing-reference`.
pub fn cross_check_upstream(
    checks: &[PathCheck],
    nar_files: &[String],
    upstream: &Answers,
    problems: &mut impl Extend<Problem>,
) -> u64 {
    let missing: HashSet<StorePath> = missing_references(checks).into_iter().collect();
    let mut found_upstream = 0;
    for r in &missing {
        found_upstream += u64::from(upstream.serves(r));
    }
    for info in checks.iter().filter_map(|c| c.narinfo.as_ref()) {
        for r in info.references.iter().filter(|r| missing.contains(*r)) {
            let shown = info.store_dir.display(r);
            let (kind, message) = match upstream.get(r) {
                Some((_, Answer::Served(_))) => continue,
                Some((name, a @ Answer::Failed(_))) => (
                    ProblemKind::CheckFailed,
                    format!(
                        "references {shown}, which has no narinfo in the cache, and the upstream {name} {}",
                        a.why_not().unwrap_or_default()
                    ),
                ),
                Some((name, a)) if !matches!(a, Answer::Absent) => (
                    ProblemKind::MissingReference,
                    format!(
                        "references {shown}, which has no narinfo in the cache nor upstream ({name}: {}) (the closure is incomplete)",
                        a.why_not().unwrap_or_default()
                    ),
                ),
                _ if upstream.has_upstreams() => (
                    ProblemKind::MissingReference,
                    format!(
                        "references {shown}, which has no narinfo in the cache nor upstream (the closure is incomplete)"
                    ),
                ),
                _ => (
                    ProblemKind::MissingReference,
                    format!(
                        "references {shown}, which has no narinfo in the cache (the closure is incomplete)"
                    ),
                ),
            };
            problems.extend([Problem::new(kind, info.path(), message)]);
        }
    }
    let used: BTreeSet<&str> = checks
        .iter()
        .filter_map(|c| c.narinfo.as_ref())
        .map(|i| i.url.as_str())
        .chain(
            checks
                .iter()
                .filter_map(|c| c.unparsed.as_ref()?.url.as_deref()),
        )
        .collect();
    for f in nar_files {
        if !used.contains(f.as_str()) {
            problems.extend([Problem::new(
                ProblemKind::OrphanNar,
                f.clone(),
                "no narinfo points to this file (a warning)",
            )]);
        }
    }
    found_upstream
}

/// The reference policy of `opts`, checked of the paths it names (else of the cache's roots:
/// the paths no other narinfo refers to) against the references the narinfos give: a
/// `reference-policy` problem per path it may not refer to, with the chain of references to
/// it; a `check-failed` for a path named that has no narinfo.
pub fn judge_policy(checks: &[PathCheck], opts: &VerifyOptions) -> Vec<Problem> {
    let applied = &opts.policy;
    if applied.policy.is_empty() {
        return Vec::new();
    }
    let graph = Graph::from_narinfos(checks.iter().filter_map(|c| c.narinfo.as_ref()));
    let roots: Vec<&StorePath> = if applied.paths.is_empty() {
        checks
            .iter()
            .filter_map(|c| c.narinfo.as_ref())
            .map(|i| &i.store_path)
            .filter(|p| graph.referrers(p).iter().all(|r| r == p))
            .collect()
    } else {
        applied.paths.iter().collect()
    };
    let dir = &opts.store_dir;
    let mut problems = Vec::new();
    for root in roots {
        let violations = match applied.policy.check(&graph, root) {
            Ok(v) => v,
            Err(_) => {
                problems.push(Problem::new(
                    ProblemKind::CheckFailed,
                    dir.display(root),
                    "has no narinfo in the cache: the reference policy cannot be checked",
                ));
                continue;
            }
        };
        for v in violations {
            for o in &v.offenders {
                problems.push(Problem::new(
                    ProblemKind::ReferencePolicy,
                    dir.display(root),
                    format!(
                        "is not allowed to refer to {} ({}: {})",
                        dir.display(&o.path),
                        v.constraint.breach(),
                        render_chain(dir, &o.chain)
                    ),
                ));
            }
        }
    }
    problems
}

/// The narinfo names of a listing, sorted, or a problem if there is none.
pub fn judge_listing(listed: io::Result<Vec<String>>) -> (Vec<String>, Vec<Problem>) {
    match listed {
        Ok(mut names) => {
            names.sort();
            (names, Vec::new())
        }
        Err(e) => (
            Vec::new(),
            vec![Problem::new(
                ProblemKind::CheckFailed,
                ".",
                format!("cannot list the cache: {e}"),
            )],
        ),
    }
}

/// The files under `nar/`, or a problem if they cannot be listed (then no orphans are found).
pub fn judge_nar_files(
    listed: io::Result<Vec<String>>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    listed.unwrap_or_else(|e| {
        problems.push(Problem::new(
            ProblemKind::CheckFailed,
            "nar",
            format!("cannot list nar/: {e}"),
        ));
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_path::StoreDir;

    fn path(c: char, name: &str) -> StorePath {
        let hash: String = std::iter::repeat_n(c, 32).collect();
        StorePath::from_base_name(&format!("{hash}-{name}")).unwrap()
    }

    fn narinfo(p: &StorePath, references: &[StorePath]) -> NarInfo {
        let refs: Vec<String> = references.iter().map(|r| r.to_string()).collect();
        NarInfo::parse(&format!(
            "StorePath: /nix/store/{p}\nURL: nar/x.nar\nCompression: none\nNarHash: sha256:1mzr0yvnrq0jbs8dmlb0mbgk1y9a0qv7lmkyd50bfdgzyvz46s7h\nNarSize: 1\nReferences: {}\n",
            refs.join(" ")
        ))
        .unwrap()
    }

    /// A missing reference an upstream serves is no problem (and counted); one it could not be
    /// asked about is a check that could not run; the rest stay missing, saying why.
    #[test]
    fn missing_references_judged_by_what_the_upstreams_said() {
        let [top, served, failed, refused, unsigned, absent, present] =
            ['a', 'b', 'c', 'd', 'f', 'g', 'h'].map(|c| path(c, &format!("p-{c}")));
        let refs = [
            served.clone(),
            failed.clone(),
            refused.clone(),
            unsigned.clone(),
            absent.clone(),
            present.clone(),
            top.clone(),
        ];
        let checks = [
            PathCheck {
                narinfo: Some(narinfo(&top, &refs)),
                ..PathCheck::default()
            },
            PathCheck {
                narinfo: Some(narinfo(&present, &[])),
                ..PathCheck::default()
            },
        ];
        let mut missing = vec![
            served.clone(),
            failed.clone(),
            refused.clone(),
            unsigned.clone(),
            absent.clone(),
        ];
        missing.sort();
        assert_eq!(missing_references(&checks), missing);

        let mut problems = Vec::new();
        let found = cross_check_upstream(&checks, &[], &Answers::none(), &mut problems);
        assert_eq!(found, 0);
        assert_eq!(problems.len(), 5);
        assert!(problems
            .iter()
            .all(|p| p.kind == ProblemKind::MissingReference
                && p.message
                    .ends_with("has no narinfo in the cache (the closure is incomplete)")));
        assert_eq!(problems, cross_check(&checks, &[]));

        let mut answers = Answers::new(vec!["https://up".into()]);
        let info = narinfo(&served, &[]);
        answers.record(served.clone(), 0, Answer::Served(Box::new(info)));
        answers.record(failed.clone(), 0, Answer::Failed("503".into()));
        answers.record(refused.clone(), 0, Answer::Refused("it names x".into()));
        answers.record(unsigned.clone(), 0, Answer::Unsigned);
        answers.record(absent.clone(), 0, Answer::Absent);
        let mut problems = Vec::new();
        let found = cross_check_upstream(&checks, &[], &answers, &mut problems);
        assert_eq!(found, 1);
        let about = |p: &StorePath| {
            let shown = StoreDir::default().display(p);
            let got: Vec<&Problem> = problems
                .iter()
                .filter(|q| q.message.starts_with(&format!("references {shown},")))
                .collect();
            assert!(got.len() <= 1);
            got.first().map(|q| (q.kind, q.message.clone()))
        };
        assert_eq!(about(&served), None);
        let (kind, message) = about(&failed).unwrap();
        assert_eq!(kind, ProblemKind::CheckFailed);
        assert!(
            message.ends_with("the upstream https://up cannot be asked: 503"),
            "{message}"
        );
        for (p, says) in [
            (&refused, "(https://up: its narinfo is refused: it names x)"),
            (&unsigned, "(https://up: its narinfo has no valid signature"),
            (&absent, "nor upstream (the closure is incomplete)"),
        ] {
            let (kind, message) = about(p).unwrap();
            assert_eq!(kind, ProblemKind::MissingReference);
            assert!(message.contains(says), "{message}");
        }
        assert_eq!(problems.len(), 4);
    }
}
