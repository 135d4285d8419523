//! Errors of object storage, as a user can act on them: what was done, to which object of which
//! bucket, and what to check (credentials, the bucket's name, the endpoint).

use std::io;

/// What an error from the object store means for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    NotFound,
    Denied,
    Unreachable,
    Precondition,
    AlreadyExists,
    /// The server answered 5xx, still after the retries.
    ServerError,
    Other,
}

/// Classifies an object store error (looking through its sources for a connection failure).
pub fn cause(e: &object_store::Error) -> Cause {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Cause::NotFound,
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => Cause::Denied,
        E::Precondition { .. } | E::NotModified { .. } => Cause::Precondition,
        E::AlreadyExists { .. } => Cause::AlreadyExists,
        _ if sources(e).any(|s| is_connection_failure(&s)) => Cause::Unreachable,
        _ => match status(e) {
            Some(401 | 403) => Cause::Denied,
            Some(404) => Cause::NotFound,
            Some(412) => Cause::Precondition,
            Some(500..=599) => Cause::ServerError,
            _ => Cause::Other,
        },
    }
}

fn sources(e: &object_store::Error) -> impl Iterator<Item = String> + '_ {
    let mut next: Option<&dyn std::error::Error> = Some(e);
    std::iter::from_fn(move || {
        let here = next?;
        next = here.source();
        Some(here.to_string())
    })
}

fn is_connection_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "connection refused",
        "error sending request",
        "dns error",
        "failed to lookup address",
        "connection reset",
        "timed out",
        "tcp connect error",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The HTTP status the server answered, as the error's text gives it.
fn status(e: &object_store::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("status code: ")? + "status code: ".len();
    text[at..].get(..3)?.parse().ok()
}

/// The text between `<tag>` and `</tag>` in an S3 error body.
fn xml_field<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(&text[start..end])
}

/// What the server or the connection said, briefly: the status and the S3 error's `Code` and
/// `Message`, or the innermost cause.
fn detail(e: &object_store::Error) -> String {
    let text = e.to_string();
    let retries = text
        .find(" after ")
        .and_then(|at| text[at + 1..].split(',').next())
        .filter(|t| t.contains("retries"))
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    if let Some(code) = xml_field(&text, "Code") {
        let message = xml_field(&text, "Message").unwrap_or_default();
        let status = status(e).map(|s| format!("HTTP {s} ")).unwrap_or_default();
        return format!("{status}{code}: {message}{retries}");
    }
    let last = sources(e).last().unwrap_or_default();
    match status(e) {
        Some(s) => format!("HTTP {s}: {last}{retries}"),
        None => format!("{last}{retries}"),
    }
}

/// The error as an `io::Error`: `doing` names the operation and the object
/// (`reading s3://b/nar/x.nar.xz`); `hint` says what to check for a denied request.
pub fn to_io(e: object_store::Error, doing: &str, endpoint: &str, hint: &str) -> io::Error {
    let detail = detail(&e);
    match cause(&e) {
        Cause::NotFound => io::Error::new(io::ErrorKind::NotFound, format!("{doing}: not found")),
        Cause::Denied => io::Error::other(format!(
            "{doing}: access denied by {endpoint}: {hint} ({detail})"
        )),
        Cause::Unreachable => io::Error::other(format!(
            "{doing}: cannot reach {endpoint} (is the server running and the endpoint right?): {detail}"
        )),
        Cause::Precondition | Cause::AlreadyExists => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{doing}: changed meanwhile by another writer ({detail})"),
        ),
        Cause::ServerError => io::Error::other(format!(
            "{doing}: the server at {endpoint} kept failing, still after retrying (is it running and healthy?): {detail}"
        )),
        Cause::Other => io::Error::other(format!("{doing}: {detail}")),
    }
}
