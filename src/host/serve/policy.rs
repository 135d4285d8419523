//! What a browser may do with what `serve` sends. Every response is `nosniff` (a NAR, a log or a
//! listing is never taken for a script or a page) and sends no `Referer` onwards. The server's own
//! pages and scripts (the inspector, its worker) get [`page_policy`]: scripts only from this
//! server (no inline script, no eval but wasm's, so no `javascript:` URL runs), styles only from
//! it, no plugins, frames or forms, and connections only to this origin and to the caches the page
//! was opened with (`?cache=URL`) or the user allowed (`&allow=ORIGIN`). Anything else (cache
//! objects, listings, messages) gets [`DATA_POLICY`]: were it opened as a page, nothing in it runs
//! and it has no origin to read storage from.

/// The policy of everything but the server's own pages and scripts.
pub(super) const DATA_POLICY: &str = "default-src 'none'; sandbox";

/// The most origins a page's query may add to its connections.
const MAX_ORIGINS: usize = 8;

/// The Content-Security-Policy of the server's own pages and scripts, given the request's query.
pub(super) fn page_policy(query: Option<&str>) -> String {
    let mut connect = String::from("'self'");
    for origin in query.map(origins).unwrap_or_default() {
        connect.push(' ');
        connect.push_str(&origin);
    }
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
         style-src 'self'; img-src 'self' data: blob:; connect-src {connect}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The origins named by `cache=` and `allow=` in a query, as `scheme://host[:port]`; anything
/// that is not plainly an http(s) URL is left out.
fn origins(query: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if key != "cache" && key != "allow" {
            continue;
        }
        let Some(origin) = form_decode(value).as_deref().and_then(origin_of) else {
            continue;
        };
        if !found.contains(&origin) && found.len() < MAX_ORIGINS {
            found.push(origin);
        }
    }
    found
}

/// A query value, `+` and percent escapes decoded; `None` if it is not UTF-8.
pub(super) fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `scheme://host[:port]` of an http(s) URL whose host is a name, an IPv4 or a bracketed IPv6
/// address (no user info, nothing a policy could be bent with); lower-cased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return None;
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => String::new(),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            format!(":{p}")
        }
        Some(_) => return None,
    };
    Some(format!("{scheme}://{}{port}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_this_origin_and_the_caches_named() {
        let p = page_policy(Some(
            "cache=https%3A%2F%2FCache.Example.org%2Fsub%2F&roots=a&allow=http://127.0.0.1:9000/x",
        ));
        assert!(p.contains("connect-src 'self' https://cache.example.org http://127.0.0.1:9000;"));
        assert!(p.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(!p.contains("unsafe-inline"));
        assert!(page_policy(None).contains("connect-src 'self';"));
    }

    #[test]
    fn only_plain_http_origins_get_in() {
        for (url, want) in [
            ("http://a.example", Some("http://a.example")),
            (
                "HTTPS://A.example:8443/x?y#z",
                Some("https://a.example:8443"),
            ),
            ("http://[::1]:8080/", Some("http://[::1]:8080")),
            ("http://[::1]x/", None),
            ("http://192.0.2.1/nar/", Some("http://192.0.2.1")),
            ("javascript:alert(1)", None),
            ("data:text/html,x", None),
            ("file:///etc/passwd", None),
            ("//a.example/", None),
            ("http://user:pw@a.example/", None),
            ("http://a.example; script-src *", None),
            ("http://a.example:80x/", None),
            ("http://a.example 'unsafe-inline'", None),
            ("http://*.example/", None),
            ("http:///x", None),
        ] {
            assert_eq!(origin_of(url).as_deref(), want, "{url}");
        }
        // Escapes are decoded first: an encoded space or semicolon cannot sneak in.
        assert!(origins("cache=http%3A%2F%2Fa.example%3B%20script-src%20*").is_empty());
        assert_eq!(
            origins("cache=http%3A%2F%2Fa.example%2F"),
            ["http://a.example"]
        );
        let many: Vec<String> = (0..20)
            .map(|i| format!("allow=http://h{i}.example"))
            .collect();
        assert_eq!(origins(&many.join("&")).len(), MAX_ORIGINS);
    }
}
