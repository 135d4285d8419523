//! HTTP details: the request head, paths, ranges, content types, conditional replies.

use super::*;

/// A parsed request head, as routing needs it.
pub(super) struct Head {
    pub(super) method: String,
    /// The path and query, as sent.
    pub(super) target: String,
    pub(super) headers: HeaderMap,
}

impl Head {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Percent-decodes a URL path into a relative path, refusing anything that could leave the root.
pub fn decode_path(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid percent escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| "not UTF-8")?;
    if s.contains('\0') || s.contains('\\') {
        return Err("NUL or backslash");
    }
    let rel = s.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c == ".") {
        return Err("\".\" or \"..\" component");
    }
    if rel.split('/').rev().skip(1).any(str::is_empty) {
        return Err("empty component");
    }
    Ok(rel.to_string())
}

/// Which bytes a `Range:` header asks for: `Ok(None)` for the whole file.
#[allow(clippy::result_unit_err)]
pub fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file is a valid answer
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let (s, e): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A file's reply: 200, 206 for a satisfiable single range, 304 when the client has it, 416.
pub(super) fn file_reply(head: &Head, object: Object, content_type: &str) -> Reply {
    let Object { meta, body: file } = object;
    let size = meta.size;
    // HTTP dates end with the year 9999: a file dated later is sent as dated then.
    const LAST_HTTP_DATE: u64 = 253_402_300_799;
    // An object without a date (one built into the binary) is sent without one, and judged by
    // its ETag alone.
    let mtime = meta
        .modified
        .map(|m| Duration::from_secs(m.min(LAST_HTTP_DATE)));
    let etag = meta.etag;
    let mut headers = vec![
        ("Content-Type", content_type.to_string()),
        ("ETag", etag.clone()),
    ];
    if let Some(mtime) = mtime {
        headers.push(("Last-Modified", httpdate::fmt_http_date(UNIX_EPOCH + mtime)));
    }
    headers.push(("Accept-Ranges", "bytes".to_string()));
    let not_modified = match (
        head.get("If-None-Match"),
        head.get("If-Modified-Since"),
        mtime,
    ) {
        (Some(tags), _, _) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        (None, Some(since), Some(mtime)) => {
            httpdate::parse_http_date(since).is_ok_and(|t: SystemTime| {
                mtime.as_secs() <= t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
            })
        }
        _ => false,
    };
    if not_modified {
        return Reply {
            status: 304,
            headers,
            body: Body::None,
        };
    }
    let range = match head.get("Range") {
        Some(r) => parse_range(r, size),
        None => Ok(None),
    };
    match range {
        Err(()) => Reply {
            status: 416,
            headers,
            body: Body::Bytes(Vec::new()),
        }
        .header("Content-Range", format!("bytes */{size}")),
        Ok(None) => Reply {
            status: 200,
            headers,
            body: Body::File(file, 0, size),
        },
        Ok(Some((start, end))) => Reply {
            status: 206,
            headers,
            body: Body::File(file, start, end - start + 1),
        }
        .header("Content-Range", format!("bytes {start}-{end}/{size}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(decode_path("/nix-cache-info").unwrap(), "nix-cache-info");
        assert_eq!(decode_path("/nar/a%2Bb.nar.xz").unwrap(), "nar/a+b.nar.xz");
        for bad in [
            "/../etc/passwd",
            "/nar/%2e%2e/x",
            "/%2E%2E/x",
            "/a/./b",
            "/a%00b",
            "/a%5cb",
            "/a//b",
            "/%zz",
        ] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
    }
}
