//! The door of `serve --auth`: a request for a cache (its keys and its listings, not the
//! inspector's files, which hold nothing of any cache) passes only with credentials allowed that
//! cache (`auth/`). Otherwise 401 with a challenge: `Basic` (what Nix's curl and a browser
//! answer), or `Bearer` for a script that says it is one (`X-Requested-With`), so that a page
//! can ask for credentials itself instead of the browser's own prompt popping up.

use super::auth::{Decision, REALM};
use super::*;

impl Site {
    /// The reply refusing a request, if it is refused.
    pub(super) async fn gate(&self, head: &Head, remote: Peer) -> Option<Reply> {
        let auth = self.auth.as_ref()?;
        if head.method != "GET" && head.method != "HEAD" {
            return None;
        }
        let path = head.target.split(['?', '#']).next().unwrap_or("/");
        // A bad path is answered 400 by the router, protected or not: it names nothing.
        let rel = decode_path(path).ok()?;
        let (shelf, _) = self.shelf_of(&rel)?;
        let mut given = head.headers.get_all(hyper::header::AUTHORIZATION).iter();
        let header = match (given.next(), given.next()) {
            (Some(one), None) => Some(one.as_bytes()),
            (None, _) => None,
            // Two: which one counts would be a guess.
            (Some(_), Some(_)) => Some(&b"(two Authorization headers)"[..]),
        };
        let decision = auth
            .check(header, ClientKey::of_peer(remote), shelf.auth_name())
            .await;
        let refusal = match decision {
            Decision::Allowed => return None,
            Decision::NotThisCache => {
                Reply::text(403, "these credentials may not read this cache\n")
            }
            Decision::Denied(_) => {
                let scheme = if head.headers.contains_key("X-Requested-With") {
                    "Bearer"
                } else {
                    "Basic"
                };
                Reply::text(
                    401,
                    "credentials needed (HTTP Basic, or Bearer NAME.SECRET)\n",
                )
                .header(
                    "WWW-Authenticate",
                    format!("{scheme} realm=\"{REALM}\", charset=\"UTF-8\""),
                )
                .header("Access-Control-Expose-Headers", "WWW-Authenticate")
            }
        };
        if self.log {
            if let Decision::Denied(why) = decision {
                eprintln!(
                    "{remote} {} refused: {why}",
                    crate::escape::escape_controls(path)
                );
            }
        }
        Some(refusal)
    }
}
