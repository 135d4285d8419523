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
        _ => Cause::Other,
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

/// The innermost message of an error chain that says something (the HTTP body's `Code` and
/// `Message` when the server sent them).
fn innermost(e: &object_store::Error) -> String {
    let all: Vec<String> = sources(e).collect();
    let last = all.last().cloned().unwrap_or_default();
    // object_store's outer layers repeat the request; keep the outer one that names the
    // status and the inner one that names the reason, once each.
    let first = all.first().cloned().unwrap_or_default();
    if first.contains(&last) {
        first
    } else {
        format!("{first} ({last})")
    }
}

/// The error as an `io::Error`: `doing` names the operation and the object
/// (`reading s3://b/nar/x.nar.xz`); `hint` says what to check for a denied request.
pub fn to_io(e: object_store::Error, doing: &str, endpoint: &str, hint: &str) -> io::Error {
    let detail = innermost(&e);
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
        Cause::Other => io::Error::other(format!("{doing}: {detail}")),
    }
}
