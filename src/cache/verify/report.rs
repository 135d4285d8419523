//! The report: assembled from the judgments (sorted, so every platform prints the same), and
//! rendered. Every rendering but JSON escapes the control characters of text that came from the
//! cache ([`escape_controls`]): a hostile narinfo cannot rewrite a terminal, a CI log or a test
//! report.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::{KeptProblems, PathCheck, Problem, ProblemKind, Report};
use crate::escape::escape_controls;

/// Assembles the report from the paths' checks and the other problems found (whose limit the
/// paths' problems share): problems sorted by path then kind, so every platform prints the same.
pub fn report(checks: Vec<PathCheck>, mut problems: KeptProblems) -> Report {
    let paths = checks.len() as u64;
    let checked_bytes = checks.iter().map(|c| c.checked_bytes).sum();
    problems.extend(checks.into_iter().flat_map(|c| c.problems));
    let (problems, omitted_problems) = problems.into_parts();
    let ok = problems
        .iter()
        .map(|p| p.kind)
        .chain(omitted_problems.keys().copied())
        .all(ProblemKind::is_warning);
    Report {
        ok,
        paths,
        checked_bytes,
        upstream_references: None,
        problems,
        omitted_problems,
    }
}

/// How to render a report. Every front end (the native CLI, `nar-cache-verify` in Node, the
/// browser inspector) renders through [`render`], so they print the same bytes.
#[derive(Debug, Clone, Copy)]
pub enum Rendering<'a> {
    /// What `nar-tool verify` prints: one line per problem, `<kind> <path>: <message>`, then the
    /// summary line.
    Text,
    /// The summary line alone: `<cache>: <n> paths, <bytes> read, OK|FAILED: …`.
    Summary,
    /// The `--json` document (pretty-printed, a newline at the end).
    Json,
    /// GitHub Actions workflow commands: an `::error` (`::warning` for a warning) per problem,
    /// at most [`GITHUB_ANNOTATIONS`] of each (GitHub shows no more per step), the last one
    /// saying how many more there are; the problems beyond as text lines; then the summary line.
    /// An annotation's `file` is the narinfo (or the file) in the cache, for a cache on disk.
    Github,
    /// A Markdown summary for `$GITHUB_STEP_SUMMARY`: the summary line and a table of the
    /// problems by kind (how many, and the first path of each).
    GithubSummary,
    /// A JUnit XML report.
    Junit(Junit<'a>),
}

/// What a JUnit report needs besides the report.
#[derive(Debug, Clone, Copy)]
pub struct Junit<'a> {
    /// The store paths checked (a narinfo that could not be parsed by its file name, as in the
    /// report), one testcase each in this order; duplicates are listed once.
    pub paths: &'a [String],
    /// How long the verification took.
    pub seconds: f64,
    /// When it ran, in seconds since the Unix epoch.
    pub timestamp: u64,
}

/// Renders `report` of the cache `cache` (as the user named it).
pub fn render(report: &Report, cache: &str, how: Rendering<'_>) -> String {
    let mut out = String::new();
    match how {
        Rendering::Text => {
            for p in &report.problems {
                out += &problem_line(p);
                out.push('\n');
            }
            out += &omitted_lines(report);
            out += &summary_line(report, cache);
        }
        Rendering::Summary => out += &summary_line(report, cache),
        Rendering::Json => {
            out += &serde_json::to_string_pretty(report).expect("a report serialises");
        }
        Rendering::Github => {
            out += &github_annotations(report, cache);
            out += &summary_line(report, cache);
        }
        Rendering::GithubSummary => return github_summary(report, cache),
        Rendering::Junit(junit) => return junit_xml(report, cache, &junit),
    }
    out.push('\n');
    out
}

/// `<kind> <path>: <message>`, control characters escaped.
pub(super) fn problem_line(p: &Problem) -> String {
    format!(
        "{} {}: {}",
        p.kind,
        escape_controls(&p.path),
        escape_controls(&p.message)
    )
}

/// The line saying how many problems the report does not list, if any (a newline after it).
pub(super) fn omitted_lines(report: &Report) -> String {
    let omitted = report.problems_omitted();
    if omitted == 0 {
        return String::new();
    }
    let kinds: Vec<String> = report
        .omitted_problems
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!(
        "omitted {omitted} more problems ({}): only the first {} are listed; --max-problems N \
         lists more, 0 every one\n",
        kinds.join(", "),
        report.problems.len()
    )
}

pub(super) fn summary_line(report: &Report, cache: &str) -> String {
    let warning = |kind: ProblemKind| u64::from(kind.is_warning());
    let warnings = report.problems.iter().map(|p| warning(p.kind)).sum::<u64>()
        + report
            .omitted_problems
            .iter()
            .map(|(kind, n)| warning(*kind) * n)
            .sum::<u64>();
    let failures = report.problems_found() - warnings;
    let upstream = report
        .upstream_references
        .map(|n| format!(", {n} references found upstream"))
        .unwrap_or_default();
    format!(
        "{}: {} paths, {} read{upstream}, {}: {failures} problems, {warnings} warnings",
        escape_controls(cache),
        report.paths,
        human_bytes(report.checked_bytes),
        if report.ok { "OK" } else { "FAILED" }
    )
}

/// Bytes as nar-tool prints them: `512 B`, `1.3 MiB` (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How many annotations of each level (error, warning) GitHub shows for a step.
pub const GITHUB_ANNOTATIONS: usize = 10;

/// The annotations (at most [`GITHUB_ANNOTATIONS`] per level, in the report's order), then the
/// problems that got none, as text lines.
fn github_annotations(report: &Report, cache: &str) -> String {
    let files = NarinfoFiles::new(report);
    let level = |p: &Problem| usize::from(p.kind.is_warning());
    let mut counts = [0usize; 2];
    for p in &report.problems {
        counts[level(p)] += 1;
    }
    // A level with more than the limit shows one fewer, and says how many more there are.
    let shown = counts.map(|n| {
        if n > GITHUB_ANNOTATIONS {
            GITHUB_ANNOTATIONS - 1
        } else {
            n
        }
    });
    let mut taken = [0usize; 2];
    let (mut out, mut rest) = (String::new(), String::new());
    for p in &report.problems {
        let l = level(p);
        if taken[l] == shown[l] {
            rest += &problem_line(p);
            rest.push('\n');
            continue;
        }
        taken[l] += 1;
        let file = files
            .file(p, cache)
            .map(|f| format!(",file={}", github_property(&f)))
            .unwrap_or_default();
        out += &format!(
            "::{} title={}{file}::{}\n",
            ["error", "warning"][l],
            github_property(p.kind.name()),
            github_data(&format!("{}: {}", p.path, p.message))
        );
    }
    for (l, (what, one, many)) in [
        ("error", "problem", "problems"),
        ("warning", "warning", "warnings"),
    ]
    .into_iter()
    .enumerate()
    {
        let more = counts[l] - shown[l];
        if more > 0 {
            let noun = if more == 1 { one } else { many };
            out += &format!(
                "::{what} title={more} more {noun}::{more} more {noun} not annotated (GitHub shows \
                 {GITHUB_ANNOTATIONS} per step): listed in the log\n"
            );
        }
    }
    out + &rest + &omitted_lines(report)
}

/// Where in the cache a problem's path is: a store path's narinfo is `<hash part>.narinfo`, or
/// the file that holds it when that is another one (a hash part mismatch says which).
struct NarinfoFiles<'a>(HashMap<&'a str, &'a str>);

impl<'a> NarinfoFiles<'a> {
    fn new(report: &'a Report) -> NarinfoFiles<'a> {
        NarinfoFiles(
            report
                .problems
                .iter()
                .filter(|p| p.kind == ProblemKind::HashPartMismatch)
                .filter_map(|p| Some((p.path.as_str(), p.found.as_deref()?)))
                .collect(),
        )
    }

    /// The file a problem is about, as a path under the cache directory; `None` for a cache
    /// that is no directory (a URL), where no file of the repository can be pointed at.
    fn file(&self, p: &Problem, cache: &str) -> Option<String> {
        if cache.contains("://") {
            return None;
        }
        let key: Cow<'_, str> = match (p.path.starts_with('/'), self.0.get(p.path.as_str())) {
            (true, Some(file)) => Cow::Borrowed(file),
            (true, None) => {
                let base = p.path.rsplit('/').next().unwrap_or_default();
                Cow::Owned(format!("{}.narinfo", base.get(..32).unwrap_or(base)))
            }
            (false, _) => Cow::Borrowed(p.path.as_str()),
        };
        let dir = cache.trim_end_matches('/');
        let dir = dir.strip_prefix("./").unwrap_or(dir);
        Some(match (dir, key.as_ref()) {
            ("" | ".", key) => key.to_string(),
            (dir, ".") => dir.to_string(),
            (dir, key) => format!("{dir}/{key}"),
        })
    }
}

/// The step summary: a heading with the verdict, the summary line, a table by kind.
fn github_summary(report: &Report, cache: &str) -> String {
    let mut out = format!(
        "### nar-cache-verify {}: {}\n\n{}\n",
        md_code(cache),
        if report.ok { "OK" } else { "FAILED" },
        md_code(&summary_line(report, cache))
    );
    if report.problems_found() == 0 {
        return out;
    }
    let mut kinds: BTreeMap<ProblemKind, (u64, Option<&str>)> = BTreeMap::new();
    for p in &report.problems {
        let (n, first) = kinds.entry(p.kind).or_default();
        *n += 1;
        first.get_or_insert(&p.path);
    }
    for (kind, omitted) in &report.omitted_problems {
        kinds.entry(*kind).or_default().0 += omitted;
    }
    out += "\n| Kind | Count | First |\n| --- | ---: | --- |\n";
    for (kind, (n, first)) in kinds {
        let what = if kind.is_warning() {
            " (a warning)"
        } else {
            ""
        };
        let first = first.map(md_code).unwrap_or_else(|| "(not listed)".into());
        out += &format!("| {}{what} | {n} | {first} |\n", md_code(kind.name()));
    }
    if report.problems_omitted() > 0 {
        out += &format!("\n{}", omitted_lines(report));
    }
    out
}

/// Text as a Markdown code span fit for a table cell: control characters escaped, `|` escaped
/// (GitHub splits cells at a bare one even in a code span), fenced by more backticks than it
/// holds in a row.
fn md_code(s: &str) -> String {
    let text = escape_controls(s).replace('|', "\\|");
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// GitHub's workflow-command escaping of data: `%`, CR and LF; first, every control character
/// escaped (an ESC would reach the log as it is).
fn github_data(s: &str) -> String {
    escape_controls(s)
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// … and of property values: `:` and `,` too.
fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// XML 1.0 text (of lines already escaped by [`problem_line`], joined by LF). Most control
/// characters cannot appear even as references: they are shown as `\u{..}`; a CR is a reference
/// (a raw one would be read back as LF).
fn xml_text(s: &str) -> String {
    xml_escape(s, false)
}

/// An XML attribute value: control characters escaped ([`escape_controls`]), then as text, and
/// quotes as references.
fn xml_attr(s: &str) -> String {
    xml_escape(&escape_controls(s), true)
}

fn xml_escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {
                out += &format!("\\u{{{:x}}}", u32::from(c));
            }
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '\r' => out += "&#13;",
            '"' if attr => out += "&quot;",
            '\'' if attr => out += "&apos;",
            '\n' if attr => out += "&#10;",
            '\t' if attr => out += "&#9;",
            c => out.push(c),
        }
    }
    out
}

/// One testcase for the cache itself (nix-cache-info, listings, orphan NARs: whatever is about
/// no path checked) and one per store path checked. A path's problems are one `<failure>` (an
/// `<error>` when every one is a check that could not run), its warnings `<system-out>`.
fn junit_xml(report: &Report, cache: &str, junit: &Junit<'_>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for p in junit.paths {
        if !names.contains(&p.as_str()) {
            names.push(p);
        }
    }
    let mut by_path: HashMap<&str, Vec<&Problem>> =
        names.iter().map(|&name| (name, Vec::new())).collect();
    let mut cache_problems: Vec<&Problem> = Vec::new();
    for p in &report.problems {
        match by_path.get_mut(p.path.as_str()) {
            Some(ps) => ps.push(p),
            None => cache_problems.push(p),
        }
    }
    let cases = std::iter::once((cache, cache_problems)).chain(
        names
            .iter()
            .map(|&name| (name, by_path.remove(name).unwrap_or_default())),
    );
    let lines = |ps: &[&Problem]| {
        ps.iter()
            .map(|p| problem_line(p))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Problems not listed count against the cache's own testcase.
    let omitted = omitted_lines(report);
    let omitted = omitted.trim_end();
    let omitted_failures = report.omitted_problems.keys().any(|k| !k.is_warning());
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    let mut body = String::new();
    for (i, (name, problems)) in cases.enumerate() {
        tests += 1;
        let (warnings, bad): (Vec<&Problem>, Vec<&Problem>) =
            problems.into_iter().partition(|p| p.kind.is_warning());
        let (mut bad_text, mut warning_text) = (lines(&bad), lines(&warnings));
        if i == 0 && !omitted.is_empty() {
            let text = if omitted_failures {
                &mut bad_text
            } else {
                &mut warning_text
            };
            if !text.is_empty() {
                text.push('\n');
            }
            *text += omitted;
        }
        let mut inner = String::new();
        let failure = bad
            .iter()
            .find(|p| p.kind != super::ProblemKind::CheckFailed);
        let lead = match (failure, bad.first()) {
            (Some(&lead), _) => Some(("failure", lead.kind.name(), lead.message.as_str())),
            (None, Some(&first)) => Some(("error", first.kind.name(), first.message.as_str())),
            (None, None) if !bad_text.is_empty() => Some(("failure", "omitted", omitted)),
            (None, None) => None,
        };
        if let Some((tag, kind, message)) = lead {
            match tag {
                "error" => errors += 1,
                _ => failures += 1,
            }
            inner += &format!(
                "      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>\n",
                xml_attr(kind),
                xml_attr(message),
                xml_text(&bad_text)
            );
        }
        if !warning_text.is_empty() {
            inner += &format!(
                "      <system-out>{}</system-out>\n",
                xml_text(&warning_text)
            );
        }
        let open = format!(
            "    <testcase classname=\"{}\" name=\"{}\"",
            xml_attr(cache),
            xml_attr(name)
        );
        if inner.is_empty() {
            body += &format!("{open}/>\n");
        } else {
            body += &format!("{open}>\n{inner}    </testcase>\n");
        }
    }
    let time = format!("{:.3}", junit.seconds);
    let cache = xml_attr(cache);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"nar-cache-verify\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">\n  \
         <testsuite name=\"{cache}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">\n    \
         <properties>\n      \
         <property name=\"ok\" value=\"{}\"/>\n      \
         <property name=\"paths\" value=\"{}\"/>\n      \
         <property name=\"checked_bytes\" value=\"{}\"/>\n    \
         </properties>\n\
         {body}  \
         </testsuite>\n\
         </testsuites>\n",
        utc_timestamp(junit.timestamp),
        report.ok,
        report.paths,
        report.checked_bytes
    )
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch.
fn utc_timestamp(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (no dates before it).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::verify::ProblemKind;

    fn report(problems: Vec<Problem>) -> Report {
        Report {
            ok: problems.iter().all(|p| p.kind.is_warning()),
            paths: 2,
            checked_bytes: 2048,
            upstream_references: None,
            problems,
            omitted_problems: Default::default(),
        }
    }

    #[test]
    fn bytes_as_rust_rounds_them() {
        for (n, s) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1280, "1.2 KiB"),
            (1792, "1.8 KiB"),
            (1_048_575, "1024.0 KiB"),
            (1_406_752, "1.3 MiB"),
            (1 << 50, "1024.0 TiB"),
        ] {
            assert_eq!(human_bytes(n), s, "{n}");
        }
    }

    #[test]
    fn text_summary_json_github() {
        let mut size = Problem::new(
            ProblemKind::FileSizeMismatch,
            "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x",
            "nar/x: FileSize is 4, the file has 5 bytes",
        );
        size.expected = Some("4".into());
        size.found = Some("5".into());
        let r = report(vec![
            size,
            Problem::new(ProblemKind::OrphanNar, "nar/a:b,c", "100% odd"),
        ]);
        let summary = "c: 2 paths, 2.0 KiB read, FAILED: 1 problems, 1 warnings\n";
        assert_eq!(render(&r, "c", Rendering::Summary), summary);
        assert_eq!(
            render(&r, "c", Rendering::Text),
            format!(
                "file-size-mismatch /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x: nar/x: FileSize is 4, the file has 5 bytes\n\
                 orphan-nar nar/a:b,c: 100% odd\n{summary}"
            )
        );
        // The annotation's file is the narinfo in the cache; the message names the store path.
        assert_eq!(
            render(&r, "c", Rendering::Github),
            format!(
                "::error title=file-size-mismatch,file=c/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.narinfo::/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x: nar/x: FileSize is 4, the file has 5 bytes\n\
                 ::warning title=orphan-nar,file=c/nar/a%3Ab%2Cc::nar/a:b,c: 100%25 odd\n{summary}"
            )
        );
        let json = render(&r, "c", Rendering::Json);
        assert!(json.ends_with("}\n"));
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        // expected/found only where there are some.
        assert_eq!(json.matches("\"expected\": \"4\"").count(), 1);
        assert_eq!(json.matches("\"found\": \"5\"").count(), 1);
        assert_eq!(json.matches("expected").count(), 1);
    }

    /// A hostile cache's text: ESC sequences, CR, LF in paths and messages.
    const HOSTILE: &str = "x\r\x1b[2K\x1b[1Aok\nfake-line\u{9b}2J\u{202e}";

    #[test]
    fn control_characters_from_the_cache_are_escaped_in_every_rendering_but_json() {
        let r = report(vec![
            Problem::new(
                ProblemKind::MalformedNarinfo,
                format!("{HOSTILE}.narinfo"),
                HOSTILE,
            ),
            Problem::new(ProblemKind::OrphanNar, format!("nar/{HOSTILE}"), HOSTILE),
        ]);
        let escaped = "x\\r\\u{1b}[2K\\u{1b}[1Aok\\nfake-line\\u{9b}2J\\u{202e}";
        let paths = [format!("{HOSTILE}.narinfo")];
        let junit = Junit {
            paths: &paths,
            seconds: 0.0,
            timestamp: 0,
        };
        for how in [
            Rendering::Text,
            Rendering::Summary,
            Rendering::Github,
            Rendering::GithubSummary,
            Rendering::Junit(junit),
        ] {
            let out = render(&r, &format!("cache{HOSTILE}"), how);
            let bad: Vec<char> = out
                .chars()
                .filter(|c| crate::escape::is_unsafe(*c) && *c != '\n')
                .collect();
            assert!(bad.is_empty(), "{how:?}: {bad:?} in {out}");
            // LF only ends the lines the renderer writes: never inside one from the cache.
            assert!(!out.contains("\nfake-line"), "{how:?}: {out}");
            assert!(out.contains(escaped), "{how:?}: {out}");
        }
        // JSON keeps the data (escaped by JSON itself).
        let json = render(&r, "c", Rendering::Json);
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.problems[0].message, HOSTILE);
    }

    fn many(kind: ProblemKind, n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| {
                Problem::new(
                    kind,
                    format!("/nix/store/{i:0>32}-p{i}"),
                    format!("problem {i}"),
                )
            })
            .collect()
    }

    fn annotations(out: &str, level: &str) -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with(&format!("::{level} ")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn github_annotations_are_capped_per_level_and_say_how_many_more() {
        // Exactly the limit: all annotated, nothing more to say.
        let r = report(many(ProblemKind::Untrusted, GITHUB_ANNOTATIONS));
        let out = render(&r, "./cache", Rendering::Github);
        assert_eq!(annotations(&out, "error").len(), GITHUB_ANNOTATIONS);
        assert!(!out.contains("more"), "{out}");
        assert_eq!(out.lines().count(), GITHUB_ANNOTATIONS + 1);

        // 2 006 errors and 12 warnings: 9 + "1 997 more", 9 + "3 more"; the rest as text lines.
        let mut ps = many(ProblemKind::Untrusted, 2006);
        ps.extend(
            (0..12).map(|i| Problem::new(ProblemKind::OrphanNar, format!("nar/o{i:02}"), "orphan")),
        );
        let r = report(ps);
        let out = render(&r, "./cache", Rendering::Github);
        let errors = annotations(&out, "error");
        assert_eq!(errors.len(), GITHUB_ANNOTATIONS);
        assert_eq!(
            errors[0],
            format!(
                "::error title=untrusted,file=cache/{}.narinfo::/nix/store/{}-p0: problem 0",
                "0".repeat(32),
                "0".repeat(32)
            )
        );
        assert_eq!(
            errors[9],
            "::error title=1997 more problems::1997 more problems not annotated (GitHub shows 10 per step): listed in the log"
        );
        let warnings = annotations(&out, "warning");
        assert_eq!(warnings.len(), GITHUB_ANNOTATIONS);
        assert_eq!(
            warnings[0],
            "::warning title=orphan-nar,file=cache/nar/o00::nar/o00: orphan"
        );
        assert!(warnings[9].starts_with("::warning title=3 more warnings::"));
        // Every problem is in the log once: annotated or as its text line.
        let text: Vec<&str> = out.lines().filter(|l| !l.starts_with("::")).collect();
        assert_eq!(text.len(), 1997 + 3 + 1);
        assert_eq!(
            text[0],
            format!("untrusted /nix/store/{:0>32}-p9: problem 9", 9)
        );
        assert!(text.contains(&"orphan-nar nar/o11: orphan"));
        assert!(text[text.len() - 1].starts_with("./cache: 2 paths, "));
    }

    #[test]
    fn github_files_are_the_narinfos_and_files_in_a_cache_on_disk() {
        let store_path = format!("/nix/store/{}-x", "a".repeat(32));
        let mut mismatch = Problem::new(ProblemKind::HashPartMismatch, &store_path, "m");
        mismatch.expected = Some(format!("{}.narinfo", "a".repeat(32)));
        mismatch.found = Some(format!("{}.narinfo", "b".repeat(32)));
        let r = report(vec![
            mismatch,
            Problem::new(ProblemKind::MissingNar, &store_path, "n"),
            Problem::new(
                ProblemKind::Untrusted,
                format!("/nix/store/{}-y", "c".repeat(32)),
                "u",
            ),
            Problem::new(ProblemKind::BadCacheInfo, "nix-cache-info", "i"),
            Problem::new(ProblemKind::MalformedNarinfo, "bogus.narinfo", "b"),
            Problem::new(ProblemKind::CheckFailed, ".", "l"),
        ]);
        let files = |cache: &str| -> Vec<String> {
            render(&r, cache, Rendering::Github)
                .lines()
                .filter_map(|l| Some(l.split_once(",file=")?.1.split_once("::")?.0.to_string()))
                .collect()
        };
        let want = |dir: &str| -> Vec<String> {
            [
                format!("{}.narinfo", "b".repeat(32)),
                format!("{}.narinfo", "b".repeat(32)),
                format!("{}.narinfo", "c".repeat(32)),
                "bogus.narinfo".into(),
                "nix-cache-info".into(),
            ]
            .into_iter()
            .map(|f| format!("{dir}{f}"))
            .collect()
        };
        // Sorted by path: ".", the narinfo name, nix-cache-info, then the store paths.
        let mut got = files("./ci/cache/");
        got.sort();
        let mut expected = want("ci/cache/");
        expected.push("ci/cache".into());
        expected.sort();
        assert_eq!(got, expected);
        let mut got = files("/abs/cache");
        got.sort();
        let mut expected = want("/abs/cache/");
        expected.push("/abs/cache".into());
        expected.sort();
        assert_eq!(got, expected);
        // A cache over HTTP: no file of the repository to point at.
        assert!(files("https://cache.example.org/").is_empty());
        assert_eq!(
            render(&r, "https://cache.example.org/", Rendering::Github)
                .matches("::error title=")
                .count(),
            6
        );
    }

    #[test]
    fn github_step_summary_is_a_table_by_kind() {
        let mut ps = many(ProblemKind::Untrusted, 3);
        ps.push(Problem::new(
            ProblemKind::MissingNar,
            "/nix/store/a|`b`",
            "m",
        ));
        ps.push(Problem::new(ProblemKind::OrphanNar, "nar/z", "o"));
        let r = report(ps);
        assert_eq!(
            render(&r, "./cache", Rendering::GithubSummary),
            format!(
                "### nar-cache-verify `./cache`: FAILED\n\n\
                 `./cache: 2 paths, 2.0 KiB read, FAILED: 4 problems, 1 warnings`\n\n\
                 | Kind | Count | First |\n\
                 | --- | ---: | --- |\n\
                 | `missing-nar` | 1 | `` /nix/store/a\\|`b` `` |\n\
                 | `untrusted` | 3 | `/nix/store/{}-p0` |\n\
                 | `orphan-nar` (a warning) | 1 | `nar/z` |\n",
                "0".repeat(32)
            )
        );
        let clean = report(Vec::new());
        assert_eq!(
            render(&clean, "c", Rendering::GithubSummary),
            "### nar-cache-verify `c`: OK\n\n`c: 2 paths, 2.0 KiB read, OK: 0 problems, 0 warnings`\n"
        );
    }

    #[test]
    fn junit() {
        let r = report(vec![
            Problem::new(
                ProblemKind::CheckFailed,
                "/nix/store/bbbb-y",
                "a <b> & 'c'\u{1}",
            ),
            Problem::new(ProblemKind::OrphanNar, "nar/z", "no narinfo"),
        ]);
        let paths = ["/nix/store/bbbb-y".to_string(), "/nix/store/cccc-z".into()];
        let junit = Junit {
            paths: &paths,
            seconds: 1.5,
            timestamp: 951_782_400 + 3661, // 2000-02-29T01:01:01
        };
        let xml = render(&r, "a \"cache\"", Rendering::Junit(junit));
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nar-cache-verify\" tests=\"3\" failures=\"0\" errors=\"1\" time=\"1.500\">\n  <testsuite name=\"a &quot;cache&quot;\" tests=\"3\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"1.500\" timestamp=\"2000-02-29T01:01:01\">\n    <properties>\n"
        ), "{xml}");
        assert!(xml.contains("    <testcase classname=\"a &quot;cache&quot;\" name=\"a &quot;cache&quot;\">\n      <system-out>orphan-nar nar/z: no narinfo</system-out>\n    </testcase>\n"), "{xml}");
        assert!(xml.contains("<error type=\"check-failed\" message=\"a &lt;b&gt; &amp; &apos;c&apos;\\u{1}\">check-failed /nix/store/bbbb-y: a &lt;b&gt; &amp; 'c'\\u{1}</error>"), "{xml}");
        assert!(
            xml.contains("name=\"/nix/store/cccc-z\"/>\n  </testsuite>\n</testsuites>\n"),
            "{xml}"
        );
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59");
    }

    /// Problems beyond the limit: counted in the summary, the exit code, the step summary and
    /// JUnit, and said in one line where the listed ones are.
    #[test]
    fn problems_not_listed_are_counted_everywhere() {
        let mut r = report(vec![Problem::new(
            ProblemKind::OrphanNar,
            "nar/z",
            "no narinfo",
        )]);
        r.omitted_problems = [
            (ProblemKind::MissingReference, 7),
            (ProblemKind::OrphanNar, 2),
        ]
        .into();
        r.ok = false;
        assert_eq!(r.exit_code(), ProblemKind::MissingReference.exit_bit());
        assert_eq!(r.problems_found(), 10);
        let omitted =
            "omitted 9 more problems (7 missing-reference, 2 orphan-nar): only the first 1 \
                       are listed; --max-problems N lists more, 0 every one\n";
        let summary = "c: 2 paths, 2.0 KiB read, FAILED: 7 problems, 3 warnings\n";
        assert_eq!(render(&r, "c", Rendering::Summary), summary);
        assert_eq!(
            render(&r, "c", Rendering::Text),
            format!("orphan-nar nar/z: no narinfo\n{omitted}{summary}")
        );
        assert!(render(&r, "c", Rendering::Github).ends_with(&format!("{omitted}{summary}")));
        let table = render(&r, "c", Rendering::GithubSummary);
        assert!(
            table.contains("| `missing-reference` | 7 | (not listed) |\n"),
            "{table}"
        );
        assert!(
            table.contains("| `orphan-nar` (a warning) | 3 | `nar/z` |\n"),
            "{table}"
        );
        assert!(table.ends_with(&format!("\n{omitted}")), "{table}");
        let junit = Junit {
            paths: &[],
            seconds: 0.0,
            timestamp: 0,
        };
        let xml = render(&r, "c", Rendering::Junit(junit));
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains(&format!(
                "<failure type=\"omitted\" message=\"{}\">{}</failure>",
                omitted.trim_end(),
                omitted.trim_end()
            )),
            "{xml}"
        );
        let back: Report = serde_json::from_str(&render(&r, "c", Rendering::Json)).unwrap();
        assert_eq!(back, r);
        // Only warnings not listed: the cache's testcase passes, with them in its output.
        r.omitted_problems = [(ProblemKind::OrphanNar, 2)].into();
        r.ok = true;
        let xml = render(&r, "c", Rendering::Junit(junit));
        assert!(xml.contains("failures=\"0\" errors=\"0\""), "{xml}");
    }
}
