//! The cache verifier: trusts nothing. It reads a cache (a directory natively, async sources in
//! wasm) and reports [`Problem`]s — every hash, size, signature, reference, URL and file — with
//! the same kinds and messages on every platform.
//!
//! Per path the checks go layer by layer (narinfo → URL → file size/hash → decompression and NAR
//! structure → NAR size/hash) and report the first layer that fails, so one damage gives one
//! problem. Memory is bounded whatever the NAR size: files are streamed, and decompression stops
//! as soon as it passes the NarSize the narinfo claims.
//!
//! One room per concern:
//! - this module: the types ([`ProblemKind`], [`Problem`], [`Report`], [`VerifyOptions`],
//!   [`PathCheck`]);
//! - [`judge`]: the pure judgments, layer by layer (bytes and findings in, problems out);
//! - [`pull`]: the sequential pull driver over a [`CacheStorage`] ([`storage`]);
//! - [`push`]: the async push driver over JS-like chunk sources (wasm);
//! - [`kept`]: the problems a report lists, at most a limit of them;
//! - [`report`](mod@report): the report assembled from the judgments, and its renderings;
//! - [`pieces`]: the renderings piece by piece, for hosts that write a large report as it goes.
//!
//! The native parallel driver is `crate::host::verify`.

use std::collections::BTreeMap;
use std::fmt;

use crate::cache::policy::ReferencePolicy;
use crate::narinfo::NarInfo;
use crate::signing::PublicKey;
use crate::store_path::{StoreDir, StorePath};

pub mod judge;
pub mod kept;
pub mod pieces;
pub mod pull;
pub mod push;
pub mod report;
pub mod share;
pub mod storage;

pub use judge::{
    cross_check, cross_check_upstream, judge_cache_info, judge_compression, judge_contents,
    judge_listing, judge_nar_files, judge_narinfo, judge_narinfo_name, judge_policy, judge_size,
    judge_url, missing, missing_references, unreadable, url_is_inside, ContentFindings, Unparsed,
};
pub use kept::{KeptProblems, DEFAULT_MAX_PROBLEMS};
pub use pull::{
    check_cache_info, check_path, list, pure_decoder, verify_cache, verify_cache_upstream,
    verify_cache_with, DecoderFn,
};
pub use push::{NarFileCheck, NarSummary};
pub use report::report;
pub use storage::{CacheStorage, ListedSizes, MemoryStorage};

/// What kind of problem.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    BadCacheInfo,
    MalformedNarinfo,
    HashPartMismatch,
    UrlOutsideCache,
    MissingNar,
    FileSizeMismatch,
    FileHashMismatch,
    MalformedNar,
    NarSizeMismatch,
    NarHashMismatch,
    MissingReference,
    BadSignature,
    Untrusted,
    OrphanNar,
    /// A check could not run (an I/O error, an unsupported compression).
    CheckFailed,
    /// A path breaks the reference policy asked for ([`VerifyOptions::policy`]).
    ReferencePolicy,
}

impl ProblemKind {
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::BadCacheInfo => "bad-cache-info",
            ProblemKind::MalformedNarinfo => "malformed-narinfo",
            ProblemKind::HashPartMismatch => "hash-part-mismatch",
            ProblemKind::UrlOutsideCache => "url-outside-cache",
            ProblemKind::MissingNar => "missing-nar",
            ProblemKind::FileSizeMismatch => "file-size-mismatch",
            ProblemKind::FileHashMismatch => "file-hash-mismatch",
            ProblemKind::MalformedNar => "malformed-nar",
            ProblemKind::NarSizeMismatch => "nar-size-mismatch",
            ProblemKind::NarHashMismatch => "nar-hash-mismatch",
            ProblemKind::MissingReference => "missing-reference",
            ProblemKind::BadSignature => "bad-signature",
            ProblemKind::Untrusted => "untrusted",
            ProblemKind::OrphanNar => "orphan-nar",
            ProblemKind::CheckFailed => "check-failed",
            ProblemKind::ReferencePolicy => "reference-policy",
        }
    }

    /// The exit-status bit, as `nix store verify`: 1 corrupt or missing, 2 signatures, 4 a check
    /// that could not run; beyond Nix, 8 a reference policy broken; 0 for warnings.
    pub fn exit_bit(self) -> u8 {
        match self {
            ProblemKind::OrphanNar => 0,
            ProblemKind::BadSignature | ProblemKind::Untrusted => 2,
            ProblemKind::CheckFailed => 4,
            ProblemKind::ReferencePolicy => 8,
            _ => 1,
        }
    }

    pub fn is_warning(self) -> bool {
        self.exit_bit() == 0
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One problem: what, about which store path (or file), and expected vs found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: String,
    pub message: String,
    /// When the judgment compared two values: the one the cache claims (a narinfo's FileSize,
    /// NarHash…, the store directory asked for, the narinfo file name its store path implies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// … and the one found (absent when it is not known: a NAR longer than NarSize is not
    /// decompressed to its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemKind, path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            path: path.into(),
            message: message.into(),
            expected: None,
            found: None,
        }
    }

    /// With the two values a judgment compared (the message already tells them in words).
    pub(crate) fn comparing(
        mut self,
        expected: impl fmt::Display,
        found: Option<impl fmt::Display>,
    ) -> Problem {
        self.expected = Some(expected.to_string());
        self.found = found.map(|f| f.to_string());
        self
    }
}

/// The whole verdict (the `--json` document).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub ok: bool,
    pub paths: u64,
    pub checked_bytes: u64,
    /// With upstream caches: how many references missing from the cache one serves (counted
    /// as present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_references: Option<u64>,
    /// The problems, in order: at most [`VerifyOptions::max_problems`] of them.
    pub problems: Vec<Problem>,
    /// How many more of each kind were found and not listed (beyond the limit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub omitted_problems: BTreeMap<ProblemKind, u64>,
}

impl Report {
    /// 0 when all is well (orphans alone included), else the sum of the problems' bits (those
    /// not listed too).
    pub fn exit_code(&self) -> u8 {
        self.problems
            .iter()
            .map(|p| p.kind)
            .chain(self.omitted_problems.keys().copied())
            .fold(0, |acc, k| acc | k.exit_bit())
    }

    /// How many problems were found, warnings included: listed or not.
    pub fn problems_found(&self) -> u64 {
        self.problems.len() as u64 + self.problems_omitted()
    }

    /// How many problems were found and not listed.
    pub fn problems_omitted(&self) -> u64 {
        self.omitted_problems.values().sum()
    }
}

#[derive(Clone)]
pub struct VerifyOptions {
    /// Keys whose signatures count; empty: signatures are not checked.
    pub trusted_keys: Vec<PublicKey>,
    /// Read and check every NAR (off: only narinfos, presence, file sizes, signatures, references).
    pub check_contents: bool,
    /// The store directory the cache must be for.
    pub store_dir: StoreDir,
    /// A reference policy to check (none by default).
    pub policy: PolicyOptions,
    /// The most problems the report lists (the first, in its order; the others are counted by
    /// kind); 0: every one.
    pub max_problems: usize,
}

/// A reference policy checked of paths of the cache, against the references its narinfos give.
#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    pub policy: ReferencePolicy,
    /// The paths it applies to; empty: the cache's roots, the paths no other path in it refers
    /// to.
    pub paths: Vec<StorePath>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            trusted_keys: Vec::new(),
            check_contents: true,
            store_dir: StoreDir::default(),
            policy: PolicyOptions::default(),
            max_problems: DEFAULT_MAX_PROBLEMS,
        }
    }
}

/// What checking one narinfo found.
#[derive(Debug, Clone, Default)]
pub struct PathCheck {
    pub narinfo: Option<NarInfo>,
    /// Set when the narinfo is malformed: what can still be told about it, so that its referrers
    /// and its NAR are not reported again as missing references and an orphan.
    pub unparsed: Option<Unparsed>,
    pub problems: Vec<Problem>,
    pub checked_bytes: u64,
}

/// The most of `nix-cache-info` that is read.
pub const MAX_CACHE_INFO_SIZE: usize = 64 * 1024;
