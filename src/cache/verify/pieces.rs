//! A report rendered piece by piece: byte for byte what [`render`] gives, in pieces of about
//! [`PIECE_BYTES`], so that a host writes a report of millions of problems without ever holding
//! its whole text (`nar-cache-verify` in Node writes each piece to stdout as it comes). The text
//! and JSON renderings go problem by problem; the others (GitHub, JUnit: a few lines per kind or
//! per path) are rendered whole and given as one piece.

use super::report::{omitted_lines, problem_line, render, summary_line, Rendering};
use super::{Problem, Report};

/// About how many bytes a piece holds (one problem more at most).
pub const PIECE_BYTES: usize = 64 * 1024;

/// Where a piecewise rendering is: give it the same report and cache each time.
pub struct Pieces {
    how: How,
    /// The next problem to render.
    next: usize,
    started: bool,
    done: bool,
}

enum How {
    Text,
    Json,
    /// Rendered whole at the start, given as one piece.
    Whole(Option<String>),
}

impl Pieces {
    pub fn new(report: &Report, cache: &str, how: Rendering<'_>) -> Pieces {
        let how = match how {
            Rendering::Text => How::Text,
            Rendering::Json => How::Json,
            other => How::Whole(Some(render(report, cache, other))),
        };
        Pieces {
            how,
            next: 0,
            started: false,
            done: false,
        }
    }

    /// The next piece of the rendering, `None` after the last one.
    pub fn next_piece(&mut self, report: &Report, cache: &str) -> Option<String> {
        if self.done {
            return None;
        }
        let mut out = String::new();
        let problems = &report.problems;
        match &mut self.how {
            How::Whole(text) => {
                self.done = true;
                return text.take();
            }
            How::Text => {
                while self.next < problems.len() && out.len() < PIECE_BYTES {
                    out += &problem_line(&problems[self.next]);
                    out.push('\n');
                    self.next += 1;
                }
                if self.next == problems.len() && out.len() < PIECE_BYTES {
                    out += &omitted_lines(report);
                    out += &summary_line(report, cache);
                    out.push('\n');
                    self.done = true;
                }
            }
            How::Json => {
                // serde_json's pretty form of the report without its problems, split where they go.
                let (head, tail) = json_frame(report);
                if !self.started {
                    out += &head;
                    if problems.is_empty() {
                        out += "[]";
                    } else {
                        out.push('[');
                    }
                }
                while self.next < problems.len() && out.len() < PIECE_BYTES {
                    if self.next > 0 {
                        out.push(',');
                    }
                    out += &json_problem(&problems[self.next]);
                    self.next += 1;
                }
                if self.next == problems.len() && out.len() < PIECE_BYTES {
                    if !problems.is_empty() {
                        out += "\n  ]";
                    }
                    out += &tail;
                    out.push('\n');
                    self.done = true;
                }
            }
        }
        self.started = true;
        Some(out)
    }
}

/// The pretty JSON of `report` before and after its (empty) problems array.
fn json_frame(report: &Report) -> (String, String) {
    let empty = Report {
        ok: report.ok,
        paths: report.paths,
        checked_bytes: report.checked_bytes,
        upstream_references: report.upstream_references,
        problems: Vec::new(),
        omitted_problems: report.omitted_problems.clone(),
    };
    let text = serde_json::to_string_pretty(&empty).expect("a report serialises");
    let at = text.rfind("[]").expect("the problems array");
    (text[..at].to_string(), text[at + 2..].to_string())
}

/// A problem as an element of the pretty array: on its own lines, indented by two levels.
fn json_problem(p: &Problem) -> String {
    let text = serde_json::to_string_pretty(p).expect("a problem serialises");
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        out += "\n    ";
        out += line;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::verify::report::Junit;
    use crate::cache::verify::ProblemKind;

    fn problems(n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| {
                let mut p = Problem::new(
                    if i % 5 == 4 {
                        ProblemKind::OrphanNar
                    } else {
                        ProblemKind::NarHashMismatch
                    },
                    format!("/nix/store/{i:032}-p\u{1b}[2K"),
                    format!(
                        "NarHash \"{i}\" is not\r\nthe hash of the NAR \\ {}",
                        "x".repeat(i % 300)
                    ),
                );
                if i % 3 == 0 {
                    p.expected = Some(format!("sha256:{i}"));
                }
                if i % 6 == 0 {
                    p.found = Some("ü".repeat(i % 7));
                }
                p
            })
            .collect()
    }

    fn all_pieces(r: &Report, cache: &str, how: Rendering<'_>) -> Vec<String> {
        let mut pieces = Pieces::new(r, cache, how);
        std::iter::from_fn(|| pieces.next_piece(r, cache)).collect()
    }

    /// Joined, the pieces are the rendering, for reports of none to thousands of problems; no
    /// piece is much over PIECE_BYTES; text and JSON come in many pieces, the rest in one.
    #[test]
    fn the_pieces_are_the_rendering() {
        for n in [0, 1, 2, 7, 3000] {
            let ps = problems(n);
            let r = Report {
                ok: ps.iter().all(|p| p.kind.is_warning()),
                paths: n as u64 + 1,
                checked_bytes: 12_345,
                upstream_references: None,
                problems: ps,
                // Odd counts: some more problems found than listed.
                omitted_problems: if n % 2 == 1 {
                    [
                        (ProblemKind::MissingReference, 5),
                        (ProblemKind::OrphanNar, 2),
                    ]
                    .into()
                } else {
                    Default::default()
                },
            };
            let names = ["a".to_string()];
            let junit = Junit {
                paths: &names,
                seconds: 1.5,
                timestamp: 1,
            };
            for how in [
                Rendering::Text,
                Rendering::Json,
                Rendering::Summary,
                Rendering::Github,
                Rendering::GithubSummary,
                Rendering::Junit(junit),
            ] {
                let pieces = all_pieces(&r, "cache\u{7}", how);
                assert_eq!(
                    pieces.concat(),
                    render(&r, "cache\u{7}", how),
                    "{n} problems, {how:?}"
                );
                let longest = pieces.iter().map(String::len).max().unwrap_or(0);
                if matches!(how, Rendering::Text | Rendering::Json) {
                    assert!(
                        longest < PIECE_BYTES + 2048,
                        "{how:?}: a piece of {longest} bytes"
                    );
                    if n == 3000 {
                        assert!(pieces.len() > 5, "{how:?}: {} pieces", pieces.len());
                    }
                } else {
                    assert_eq!(pieces.len(), 1, "{how:?}");
                }
            }
        }
    }
}
