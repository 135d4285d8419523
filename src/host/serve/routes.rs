//! Which object a request gets. Two namespaces that cannot collide: under `/_nar-tool/` the
//! server's own things (the inspector's JSON listings, the inspector's files and the package's
//! browser entry: `own_files.rs`), and everywhere else the keys of the cache layout, answered
//! from the cache alone with the layout's content types (never HTML or SVG: a cache cannot pose
//! as the inspector). `/` leads to the inspector.

use super::*;

impl Site {
    /// The response to one request.
    pub(super) async fn answer(
        self: Arc<Site>,
        req: Request<Incoming>,
        remote: Peer,
        in_flight: InFlight,
    ) -> Response<Outgoing> {
        // A body on a GET or HEAD means nothing: hyper skips it (or closes the connection).
        let (parts, _body) = req.into_parts();
        let head_only = parts.method == Method::HEAD;
        let log = self.log.then(|| LogLine {
            remote,
            request: format!("{} {}", parts.method, parts.uri),
            status: 0,
        });
        let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let reply = if !target.starts_with('/') {
            // Not a path (an authority, `*`): as malformed as a bad request line, so close.
            Reply::text(400, "bad request: the target is not a path\n")
                .header("Connection", "close")
        } else {
            let head = Head {
                method: parts.method.as_str().to_string(),
                target: target.to_string(),
                headers: parts.headers,
            };
            if let Some(refusal) = self.gate(&head, remote).await {
                let refusal = self.decorate(refusal, &head);
                return refusal.into_response(head_only, log, Some(in_flight));
            }
            // A listing waits for its turn (they are few at once: `json.rs`).
            let turn = match head.target.strip_prefix("/_nar-tool/") {
                Some(rest) if json::Listing::of(rest.split('?').next().unwrap_or("")).is_some() => {
                    self.json_work.clone().acquire_owned().await.ok()
                }
                _ => None,
            };
            let site = self.clone();
            tokio::task::spawn_blocking(move || {
                let reply = site.prepare(&head);
                drop(turn);
                reply
            })
            .await
            .unwrap_or_else(|e| {
                // The details go to the log, not to the client.
                eprintln!("internal error answering {target}: {e}");
                Reply::text(500, "internal error\n")
            })
        };
        reply.into_response(head_only, log, Some(in_flight))
    }

    /// [`Site::route`], with a file body positioned at the start of its range, or read already
    /// when it is at most a [`CHUNK`] (narinfos, most inspector files; not for HEAD).
    pub(super) fn prepare(&self, head: &Head) -> Reply {
        let mut reply = self.route(head);
        if let Body::File(file, offset, len) = &mut reply.body {
            let mut read = || -> io::Result<Option<Vec<u8>>> {
                file.seek(SeekFrom::Start(*offset))?;
                if *len > CHUNK as u64 || head.method == "HEAD" {
                    return Ok(None);
                }
                read_exactly(&mut **file, *len).map(Some)
            };
            match read() {
                Ok(None) => {}
                Ok(Some(bytes)) => reply.body = Body::Bytes(bytes),
                Err(e) => return Reply::text(500, &format!("cannot read the file: {e}\n")),
            }
        }
        reply
    }

    /// The reply to a request.
    pub(super) fn route(&self, head: &Head) -> Reply {
        self.decorate(self.dispatch(head), head)
    }

    /// A reply with the headers every reply gets.
    pub(super) fn decorate(&self, mut reply: Reply, head: &Head) -> Reply {
        // Every reply may be read by the inspector served from elsewhere.
        reply
            .headers
            .push(("Access-Control-Allow-Origin", "*".into()));
        // The server's own pages and scripts (no cache object is HTML or JavaScript) may run,
        // within their policy; nothing else may.
        let own = reply.headers.iter().any(|(name, value)| {
            *name == "Content-Type"
                && (value.starts_with("text/html") || value.starts_with("text/javascript"))
        });
        let query = head.target.split_once('?').map(|(_, q)| q);
        let policy = if own {
            policy::page_policy(query)
        } else {
            policy::DATA_POLICY.into()
        };
        reply.headers.push(("Content-Security-Policy", policy));
        reply
    }

    /// The reply to a request, before the CORS header every reply gets.
    pub(super) fn dispatch(&self, head: &Head) -> Reply {
        if head.method == "OPTIONS" {
            // A CORS preflight (the inspector served from elsewhere, sending Range, say).
            return Reply {
                status: 204,
                headers: vec![
                    ("Access-Control-Allow-Methods", "GET, HEAD".into()),
                    (
                        "Access-Control-Allow-Headers",
                        "Range, If-None-Match, If-Modified-Since, Authorization, X-Requested-With"
                            .into(),
                    ),
                    ("Access-Control-Max-Age", "86400".into()),
                    ("Allow", "GET, HEAD, OPTIONS".into()),
                ],
                body: Body::None,
            };
        }
        if head.method != "GET" && head.method != "HEAD" {
            return Reply::text(405, "only GET and HEAD\n").header("Allow", "GET, HEAD");
        }
        let path = head.target.split(['?', '#']).next().unwrap_or("/");
        let rel = match decode_path(path) {
            Ok(rel) => rel,
            Err(why) => return Reply::text(400, &format!("bad path: {why}\n")),
        };
        let shelf = self.shelf_of(&rel);
        if let Some((shelf, "_nar-tool/files")) = shelf {
            let query = head.target.split_once('?').map_or("", |(_, q)| q);
            return shelf.bundle(query);
        }
        if let Some((shelf, which)) = shelf.and_then(|(shelf, rest)| {
            let which = rest
                .strip_prefix("_nar-tool/")
                .and_then(json::Listing::of)?;
            Some((shelf, which))
        }) {
            let query = head.target.split_once('?').map_or("", |(_, q)| q);
            if which == json::Listing::Lookup {
                return shelf.lookup(query);
            }
            return match shelf.listing_page(which, query) {
                Ok(body) => Reply {
                    status: 200,
                    headers: vec![
                        ("Content-Type", "application/json".into()),
                        ("Cache-Control", "no-cache".into()),
                    ],
                    body: Body::Bytes(body),
                },
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    Reply::text(400, &format!("{e}\n"))
                }
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    Reply::text(503, &format!("{e}\n"))
                }
                Err(e) => Reply::text(500, &format!("cannot list the cache: {e}\n")),
            };
        }
        let query = head.target.split_once('?').map(|(_, q)| q);
        let opened = if rel == "_nar-tool" || (rel.is_empty() && self.has_inspector()) {
            // To the inspector, with the query (`?cache=…`), by a relative URL (so that a
            // prefix a proxy adds is kept).
            let to = format!(
                "_nar-tool/{}",
                query.map(|q| format!("?{q}")).unwrap_or_default()
            );
            return Reply::text(302, "the inspector is at /_nar-tool/\n").header("Location", to);
        } else if rel.is_empty() {
            return self.no_inspector_page();
        } else if let Some((shelf, rest)) = shelf {
            match CacheKey::parse(rest) {
                Ok(key) => shelf
                    .cache
                    .open(&key)
                    .map(|o| o.map(|o| (o, key.content_type()))),
                Err(_) => Ok(None),
            }
        } else if let Some(rest) = rel.strip_prefix("_nar-tool/") {
            self.open_own(rest)
        } else {
            Ok(None)
        };
        let opened = match opened {
            Ok(opened) => opened,
            // A symlink leading out, a FIFO, a directory: not something this server has.
            Err(e) if is_refused(&e) => None,
            Err(_) => return Reply::text(500, "cannot read the file\n"),
        };
        let Some((object, content_type)) = opened else {
            return Reply::text(404, "not found\n");
        };
        let mut r = file_reply(head, object, content_type);
        r.headers.push((
            "Access-Control-Expose-Headers",
            "Content-Range, Accept-Ranges, ETag, Last-Modified".into(),
        ));
        r
    }

    /// What `/` shows when there is no inspector to lead to.
    fn no_inspector_page(&self) -> Reply {
        let page = format!(
            "<!doctype html><title>nar-tool serve</title><p>Binary cache at {}. This build of nar-tool has no inspector: build it with <code>--features embed-inspector</code>, or start <code>serve</code> with <code>--inspector DIR</code>.</p>\n",
            html_escape(&self.describe())
        );
        Reply {
            status: 200,
            headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
            body: Body::Bytes(page.into_bytes()),
        }
    }
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
