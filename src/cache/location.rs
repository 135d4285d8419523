//! Where a cache is, as a user writes it: a directory (a bare path or `file://DIR`), an
//! S3-compatible bucket (`s3://BUCKET[/PREFIX]?region=…&endpoint=…&scheme=…&profile=…`, Nix's
//! own parameters, so a substituter URL from `nix.conf` works unchanged) or a cache served over
//! HTTP (`http://…`, `https://…`, read-only).
//!
//! Parsing only: opening the storage is the host's (`host::open`).

use std::collections::BTreeMap;
use std::fmt;

/// A parsed cache location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A directory on this machine.
    Directory(String),
    /// A bucket of an S3-compatible object store.
    S3(S3Location),
    /// A cache served over HTTP(S), read-only; the base URL, without a trailing `/`.
    Http(String),
}

/// `s3://BUCKET[/PREFIX]?…`, with Nix's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// The folder inside the bucket that holds the cache (`a/b`, no leading or trailing `/`);
    /// empty for the bucket's root.
    pub prefix: String,
    /// `region=` (Nix's default is `us-east-1`).
    pub region: Option<String>,
    /// `endpoint=HOST[:PORT]` (or a whole `http(s)://HOST[:PORT]` URL) of an S3-compatible server.
    pub endpoint: Option<String>,
    /// `scheme=http|https` for the endpoint.
    pub scheme: Option<String>,
    /// `profile=` of the shared credentials file.
    pub profile: Option<String>,
    /// Nix's binary-cache settings given in the URL (`compression=`, `secret-key=`, …): kept so a
    /// command can apply or mention them; they do not change where the cache is.
    pub settings: BTreeMap<String, String>,
}

/// Nix's settings of a binary cache store that an `s3://` substituter URL may carry besides
/// the S3 ones. They are accepted (a URL copied from `nix.conf` works); those that matter to a
/// command are read from [`S3Location::settings`].
pub const NIX_STORE_SETTINGS: &[&str] = &[
    "compression",
    "compression-level",
    "secret-key",
    "write-nar-listing",
    "write-debug-info",
    "index-debug-info",
    "parallel-compression",
    "narinfo-compression",
    "ls-compression",
    "log-compression",
    "multipart-upload",
    "buffer-size",
    "want-mass-query",
    "priority",
    "trusted",
    "local-nar-cache",
    "path-info-cache-size",
    "store",
    "state",
    "real",
];

/// Why a location was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationError {
    pub location: String,
    pub why: String,
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache location {:?}: {}", self.location, self.why)
    }
}

impl std::error::Error for LocationError {}

/// `text` as an error may show it: without the `USER:SECRET@` of a URL's authority.
fn without_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

impl CacheLocation {
    /// Parses what a user wrote. Anything without a `scheme://` is a directory path.
    pub fn parse(text: &str) -> Result<CacheLocation, LocationError> {
        let err = |why: String| LocationError {
            location: without_userinfo(text),
            why,
        };
        let Some((scheme, _)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(err("empty".into()));
            }
            return Ok(CacheLocation::Directory(text.to_string()));
        };
        if !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            // `./odd://name` is a path.
            return Ok(CacheLocation::Directory(text.to_string()));
        }
        let url = url::Url::parse(text).map_err(|e| err(format!("not a URL: {e}")))?;
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
                    return Err(err(format!(
                        "a file:// URL names a directory on this machine, not on {:?}",
                        url.host_str().unwrap_or_default()
                    )));
                }
                if url.query().is_some() {
                    return Err(err(
                        "parameters of a file:// cache are not supported here (give them as options)"
                            .into(),
                    ));
                }
                // As `Url::to_file_path` does, but on every target (wasm has none).
                let path = percent_encoding::percent_decode_str(url.path())
                    .decode_utf8()
                    .map_err(|_| err("the path is not UTF-8 once decoded".into()))?
                    .into_owned();
                if path.contains('\0') {
                    return Err(err("the path has a NUL byte".into()));
                }
                Ok(CacheLocation::Directory(path))
            }
            "s3" => parse_s3(text, &url).map(CacheLocation::S3).map_err(err),
            "http" | "https" => {
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(err(
                        "an HTTP cache's URL has no query or fragment: give its base URL".into(),
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(err("no host".into()));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(err(format!(
                        "credentials in the URL are refused (they show in process lists and logs); put them in a netrc file instead: `machine {} login USER password SECRET`",
                        url.host_str().unwrap_or_default()
                    )));
                }
                Ok(CacheLocation::Http(
                    url.as_str().trim_end_matches('/').to_string(),
                ))
            }
            other => Err(err(format!(
                "unsupported scheme {other:?}: expected a directory, file://, s3://, http:// or https://"
            ))),
        }
    }

    /// Whether the location can be written to (HTTP caches are read-only).
    pub fn is_writable(&self) -> bool {
        !matches!(self, CacheLocation::Http(_))
    }
}

impl fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheLocation::Directory(d) => f.write_str(d),
            CacheLocation::Http(u) => f.write_str(u),
            CacheLocation::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                Ok(())
            }
        }
    }
}

fn parse_s3(text: &str, url: &url::Url) -> Result<S3Location, String> {
    let bucket = url.host_str().unwrap_or_default().to_string();
    check_bucket(&bucket)?;
    // The prefix as written: the URL parser would resolve `a/../b` and decode escapes.
    let raw = text.split_once("://").map_or("", |(_, rest)| rest);
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    let prefix = raw
        .split_once('/')
        .map_or("", |(_, path)| path)
        .trim_end_matches('/')
        .to_string();
    for segment in prefix.split('/').filter(|_| !prefix.is_empty()) {
        if segment.contains('%') {
            return Err(format!(
                "the prefix {prefix:?} has a %-escape: write its characters as they are"
            ));
        }
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "the prefix {prefix:?} has an empty, `.` or `..` segment"
            ));
        }
        if segment.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!("the prefix {prefix:?} has a control character"));
        }
    }
    if url.port().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(
            "an s3:// URL names a bucket only: give the server as endpoint=HOST:PORT and credentials as AWS tools find them"
                .into(),
        );
    }
    let mut loc = S3Location {
        bucket,
        prefix,
        region: None,
        endpoint: None,
        scheme: None,
        profile: None,
        settings: BTreeMap::new(),
    };
    for (name, value) in url.query_pairs() {
        let (name, value) = (name.into_owned(), value.into_owned());
        let slot = match name.as_str() {
            "region" => &mut loc.region,
            "endpoint" => &mut loc.endpoint,
            "scheme" => &mut loc.scheme,
            "profile" => &mut loc.profile,
            other if NIX_STORE_SETTINGS.contains(&other) => {
                loc.settings.insert(name, value);
                continue;
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (expected region, endpoint, scheme, profile or one of Nix's store settings: {})",
                    NIX_STORE_SETTINGS.join(", ")
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("the parameter {name:?} is given twice"));
        }
        if value.is_empty() {
            return Err(format!("the parameter {name:?} is empty"));
        }
        *slot = Some(value);
    }
    if let Some(scheme) = &loc.scheme {
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme={scheme:?}: expected http or https"));
        }
    }
    Ok(loc)
}

/// S3's rules for bucket names: 3 to 63 lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(text: &str) -> S3Location {
        match CacheLocation::parse(text).unwrap() {
            CacheLocation::S3(s) => s,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn directories() {
        for (text, dir) in [
            ("cache", "cache"),
            ("./c", "./c"),
            ("/srv/cache", "/srv/cache"),
            ("file:///srv/cache", "/srv/cache"),
            ("file:///srv/a%20b/", "/srv/a b/"),
            ("file://localhost/srv", "/srv"),
            ("./odd://name", "./odd://name"),
        ] {
            assert_eq!(
                CacheLocation::parse(text).unwrap(),
                CacheLocation::Directory(dir.into()),
                "{text}"
            );
        }
    }

    #[test]
    fn nix_s3_urls() {
        let loc = s3("s3://cache?region=eu-west-1&endpoint=127.0.0.1:8333&scheme=http&profile=ci");
        assert_eq!(loc.bucket, "cache");
        assert_eq!(loc.prefix, "");
        assert_eq!(loc.region.as_deref(), Some("eu-west-1"));
        assert_eq!(loc.endpoint.as_deref(), Some("127.0.0.1:8333"));
        assert_eq!(loc.scheme.as_deref(), Some("http"));
        assert_eq!(loc.profile.as_deref(), Some("ci"));
        let loc = s3("s3://my.bucket-1/a/b/?compression=zstd&secret-key=/k");
        assert_eq!(loc.prefix, "a/b");
        assert_eq!(loc.settings["compression"], "zstd");
        assert_eq!(loc.settings["secret-key"], "/k");
        assert_eq!(
            CacheLocation::S3(loc).to_string(),
            "s3://my.bucket-1/a/b",
            "shown without the parameters"
        );
    }

    #[test]
    fn http() {
        assert_eq!(
            CacheLocation::parse("https://cache.example/sub/").unwrap(),
            CacheLocation::Http("https://cache.example/sub".into())
        );
        assert!(!CacheLocation::parse("http://h").unwrap().is_writable());
    }

    #[test]
    fn refused() {
        for (text, why) in [
            ("", "empty"),
            ("ftp://x/y", "unsupported scheme"),
            ("s3://Upper", "not a bucket name"),
            ("s3://ab", "not a bucket name"),
            ("s3://-ab", "not a bucket name"),
            ("s3://b%2fc", "not a bucket name"),
            ("s3://bucket/a//b", "empty, `.` or `..`"),
            ("s3://bucket/a/../b", "empty, `.` or `..`"),
            ("s3://bucket/a/%2e%2e/b", "%-escape"),
            ("s3://bucket//a", "empty, `.` or `..`"),
            ("s3://bucket:9000", "names a bucket only"),
            ("s3://key:secret@bucket", "names a bucket only"),
            ("s3://bucket?regoin=x", "unknown parameter \"regoin\""),
            ("s3://bucket?region=a&region=b", "given twice"),
            ("s3://bucket?region=", "is empty"),
            ("s3://bucket?scheme=ftp", "expected http or https"),
            ("file://otherhost/x", "not on"),
            ("file:///x?y=1", "parameters"),
            ("http://h/x?a=b", "no query"),
            ("https://user:secret@h/x", "netrc file"),
            ("https://user@h/x", "`machine h login"),
        ] {
            let e = CacheLocation::parse(text).expect_err(text);
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(!e.to_string().contains("secret@"), "{text}: {e}");
        }
    }
}
