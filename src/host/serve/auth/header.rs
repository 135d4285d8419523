//! The credentials of an `Authorization` header: `Basic base64(NAME:SECRET)` (what Nix sends from
//! its `netrc-file`, and curl's `-u`) or `Bearer NAME.SECRET` (a token of `nar-tool auth add
//! --generate`). Anything else, or too long, is no credentials at all.

use base64::Engine as _;

use super::file::{check_name, MAX_SECRET};

/// The longest header value looked at.
const MAX_HEADER: usize = 4 * MAX_SECRET;

/// What a client claims.
#[derive(PartialEq, Eq)]
pub struct Credentials {
    pub name: String,
    pub secret: Vec<u8>,
    pub scheme: Scheme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer,
}

/// Never the secret, even in a debug print.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} (secret hidden)", self.scheme, self.name)
    }
}

/// The credentials in a header value, or why there are none usable.
pub fn parse(value: &[u8]) -> Result<Credentials, &'static str> {
    if value.len() > MAX_HEADER {
        return Err("the Authorization header is too long");
    }
    let value = std::str::from_utf8(value).map_err(|_| "the Authorization header is not UTF-8")?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header has no scheme")?;
    let rest = rest.trim();
    let (scheme, name, secret) = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| "Basic credentials that are not base64")?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or("Basic credentials without a ':'")?;
        let name = String::from_utf8(decoded[..colon].to_vec())
            .map_err(|_| "a user name that is not UTF-8")?;
        (Scheme::Basic, name, decoded[colon + 1..].to_vec())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let (name, secret) = rest
            .split_once('.')
            .ok_or("a bearer token that is not NAME.SECRET")?;
        (Scheme::Bearer, name.to_string(), secret.as_bytes().to_vec())
    } else {
        return Err("an Authorization scheme other than Basic or Bearer");
    };
    check_name(&name).map_err(|_| "a malformed user name")?;
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err("an empty or too long secret");
    }
    Ok(Credentials {
        name,
        secret,
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn basic_and_bearer() {
        let c = parse(basic("alice:pa:ss word").as_bytes()).unwrap();
        assert_eq!(
            (c.name.as_str(), c.secret.as_slice()),
            ("alice", &b"pa:ss word"[..])
        );
        assert_eq!(c.scheme, Scheme::Basic);
        let c = parse(b"bearer  ci-bot.abc.def ").unwrap();
        assert_eq!(
            (c.name.as_str(), c.secret.as_slice()),
            ("ci-bot", &b"abc.def"[..])
        );
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn malformed_headers_are_no_credentials() {
        let long = basic(&format!("a:{}", "x".repeat(MAX_SECRET + 1)));
        for bad in [
            "".to_string(),
            "Basic".into(),
            "Basic !!!".into(),
            basic("no-colon"),
            basic(":secret"),
            basic("al ice:secret"),
            basic("alice:"),
            "Digest username=\"a\"".into(),
            "Bearer token-without-dot".into(),
            "Bearer .secret".into(),
            long,
            "x".repeat(MAX_HEADER + 1),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(b"Basic \xff\xfe").is_err());
    }
}
