//! The listing `nar-tool serve` publishes of a cache, read page by page: an HTTP cache has no
//! listing of its own. `GET BASE/_nar-tool/WHAT?offset=N` answers
//! `{"total":T,"offset":N,"items":[…],"next":M|null}` (an older server: a plain JSON list).

use std::io;
use std::time::Duration;

use serde::Deserialize;

/// The most bytes one page may have, and the most names in all.
const MAX_PAGE_BYTES: usize = 64 << 20;
const MAX_NAMES: usize = 50_000_000;

#[derive(Deserialize)]
#[serde(untagged)]
enum Page {
    Paged {
        total: usize,
        items: Vec<String>,
        next: Option<usize>,
    },
    Whole(Vec<String>),
}

/// A client sending the cache's credentials, and what to check when they are refused.
fn client(base: &str) -> io::Result<(reqwest::Client, String)> {
    let (headers, hint) = super::config::http_credentials(base)?;
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| io::Error::other(format!("an HTTP client: {e}")))?;
    Ok((client, hint))
}

/// Every name of the listing `what` (`narinfos`, `nar-files`) of the cache at `base`.
pub async fn fetch_all(base: String, what: &'static str) -> io::Result<Vec<String>> {
    let (client, hint) = client(&base)?;
    let mut names = Vec::new();
    let mut offset = 0usize;
    loop {
        let url = format!("{base}/_nar-tool/{what}?offset={offset}");
        let failed = |why: String| io::Error::other(format!("listing {url}: {why}"));
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| failed(format!("no answer ({e})")))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{base} cannot be listed: an HTTP cache has no listing unless `nar-tool serve` serves it (no /_nar-tool/{what}); verify a directory or bucket instead"
                ),
            ));
        }
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("listing {url}: HTTP {status}: {hint}"),
            ));
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
        {
            return Err(failed(format!("a page larger than {MAX_PAGE_BYTES} bytes")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?;
        if body.len() > MAX_PAGE_BYTES {
            return Err(failed(format!("a page larger than {MAX_PAGE_BYTES} bytes")));
        }
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("not a listing page: {e}")))?;
        match page {
            Page::Whole(items) => return Ok(items),
            Page::Paged { total, items, next } => {
                if total > MAX_NAMES {
                    return Err(failed(format!("{total} names, more than {MAX_NAMES}")));
                }
                let got = items.len();
                names.extend(items);
                match next {
                    None => return Ok(names),
                    Some(n) if n > offset && got > 0 && names.len() <= total => offset = n,
                    Some(n) => {
                        return Err(failed(format!(
                            "the listing does not advance (next {n} after offset {offset})"
                        )))
                    }
                }
            }
        }
    }
}
