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
    /// GitHub Actions workflow commands, one `::error` (`::warning` for a warning) per problem,
    /// then the summary line.
    Github,
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
            out += &summary_line(report, cache);
        }
        Rendering::Summary => out += &summary_line(report, cache),
        Rendering::Json => {
            out += &serde_json::to_string_pretty(report).expect("a report serialises");
        }
        Rendering::Github => {
            for p in &report.problems {
                let level = if p.kind.is_warning() {
                    "warning"
                } else {
                    "error"
                };
                out += &format!(
                    "::{level} title={},file={}::{}\n",
                    github_property(p.kind.name()),
                    github_property(&p.path),
                    github_data(&p.message)
                );
            }
            out += &summary_line(report, cache);
        }
        Rendering::Junit(junit) => return junit_xml(report, cache, &junit),
    }
    out.push('\n');
    out
}

/// `<kind> <path>: <message>`
fn problem_line(p: &Problem) -> String {
    format!("{} {}: {}", p.kind, p.path, p.message)
}

fn summary_line(report: &Report, cache: &str) -> String {
    let failures = report
        .problems
        .iter()
        .filter(|p| !p.kind.is_warning())
        .count();
    let warnings = report.problems.len() - failures;
    format!(
        "{cache}: {} paths, {} read, {}: {failures} problems, {warnings} warnings",
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

/// GitHub's workflow-command escaping of data: `%`, CR and LF.
fn github_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// … and of property values: `:` and `,` too.
fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// XML 1.0 text. Most control characters cannot appear even as references: they are shown as
/// `\u{..}`; a CR is a reference (a raw one would be read back as LF).
fn xml_text(s: &str) -> String {
    xml_escape(s, false)
}

/// An XML attribute value: as text, and quotes, LF and tab as references.
fn xml_attr(s: &str) -> String {
    xml_escape(s, true)
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
    let cache_problems: Vec<&Problem> = report
        .problems
        .iter()
        .filter(|p| !names.contains(&p.path.as_str()))
        .collect();
    let cases = std::iter::once((cache, cache_problems)).chain(names.iter().map(|&name| {
        let problems = report.problems.iter().filter(|p| p.path == name).collect();
        (name, problems)
    }));
    let lines = |ps: &[&Problem]| {
        ps.iter()
            .map(|p| problem_line(p))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    let mut body = String::new();
    for (name, problems) in cases {
        tests += 1;
        let (warnings, bad): (Vec<&Problem>, Vec<&Problem>) =
            problems.into_iter().partition(|p| p.kind.is_warning());
        let mut inner = String::new();
        if let Some(&first) = bad.first() {
            let failure = bad
                .iter()
                .find(|p| p.kind != super::ProblemKind::CheckFailed);
            let (tag, lead) = match failure {
                Some(&lead) => {
                    failures += 1;
                    ("failure", lead)
                }
                None => {
                    errors += 1;
                    ("error", first)
                }
            };
            inner += &format!(
                "      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>\n",
                xml_attr(lead.kind.name()),
                xml_attr(&lead.message),
                xml_text(&lines(&bad))
            );
        }
        if !warnings.is_empty() {
            inner += &format!(
                "      <system-out>{}</system-out>\n",
                xml_text(&lines(&warnings))
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
            problems,
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
            "/nix/store/aaaa-x",
            "nar/x: FileSize is 4, the file has 5 bytes",
        );
        size.expected = Some("4".into());
        size.found = Some("5".into());
        let r = report(vec![
            size,
            Problem::new(ProblemKind::OrphanNar, "nar/a:b,c", "100% odd:\r\nline"),
        ]);
        let summary = "c: 2 paths, 2.0 KiB read, FAILED: 1 problems, 1 warnings\n";
        assert_eq!(render(&r, "c", Rendering::Summary), summary);
        assert_eq!(
            render(&r, "c", Rendering::Text),
            format!(
                "file-size-mismatch /nix/store/aaaa-x: nar/x: FileSize is 4, the file has 5 bytes\n\
                 orphan-nar nar/a:b,c: 100% odd:\r\nline\n{summary}"
            )
        );
        assert_eq!(
            render(&r, "c", Rendering::Github),
            format!(
                "::error title=file-size-mismatch,file=/nix/store/aaaa-x::nar/x: FileSize is 4, the file has 5 bytes\n\
                 ::warning title=orphan-nar,file=nar/a%3Ab%2Cc::100%25 odd:%0D%0Aline\n{summary}"
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
}
