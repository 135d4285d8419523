//! Text from a cache made safe to print: every control character written out as an escape, so a
//! hostile narinfo cannot move the cursor, erase lines, fake a line of its own or turn text
//! around in a terminal, a CI log or a test report (Nix filters builders' logs for the same
//! reason). One function, used by every renderer of text that came from a cache (the report's
//! text, GitHub and JUnit renderings; the JS API's `escapeControls`).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a log as it is: the C0 controls (ESC, CR, LF, tab,
/// backspace…), DEL, the C1 controls (a lone U+009B is a CSI to some terminals), the line and
/// paragraph separators, and the bidirectional formatting characters (which reorder what
/// follows them on screen).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [unsafe](is_unsafe) character escaped: `\n`, `\r`, `\t`, else `\u{1b}` (the
/// character's code point in hex, as Rust writes it). Everything else is kept, backslashes
/// included. Borrows when there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "nar/1q41.nar.xz does not exist",
            "ünïcödé → ✓ \\ \"q\" 100%",
        ] {
            assert!(matches!(escape_controls(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn every_control_is_escaped() {
        assert_eq!(
            escape_controls("a\r\x1b[2K\x1b[1Ab\nc\td\0e\x7f\u{9b}f"),
            "a\\r\\u{1b}[2K\\u{1b}[1Ab\\nc\\td\\u{0}e\\u{7f}\\u{9b}f"
        );
        assert_eq!(
            escape_controls("x\u{202e}y\u{2066}z\u{2028}"),
            "x\\u{202e}y\\u{2066}z\\u{2028}"
        );
        // Nothing unsafe is left, whatever the input.
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        let escaped = escape_controls(&all);
        assert!(!escaped.chars().any(is_unsafe));
        // Only those: printable characters next to them are kept.
        assert!(escaped.contains(" !\"#") && escaped.contains("\u{a0}\u{a1}"));
    }
}
