//! Giving up sooner on an endpoint that refuses connections: nothing listens there (a wrong
//! port, a server stopped), and waiting out the whole retry time would not change that, where a
//! server answering 5xx may be recovering. The client's requests go through [`Connector`]: once
//! every connection attempt of every request has been refused for [`refused_give_up`] in a row
//! (no request got an answer meanwhile), a refusal is final and is not retried.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::ClientOptions;

/// How long connections may be refused before a refusal is final: 5 s, or the whole retry time
/// when that is shorter.
pub fn refused_give_up(retry: Duration) -> Duration {
    retry.min(Duration::from_secs(5))
}

/// Makes the usual client, its requests watched for refusals.
#[derive(Debug)]
pub struct Connector {
    give_up: Duration,
}

impl Connector {
    pub fn new(give_up: Duration) -> Connector {
        Connector { give_up }
    }
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Watched {
            inner: ReqwestConnector::default().connect(options)?,
            refused_since: Mutex::new(None),
            give_up: self.give_up,
        }))
    }
}

#[derive(Debug)]
struct Watched {
    inner: HttpClient,
    /// Since when every attempt was refused (`None`: the last one got an answer).
    refused_since: Mutex<Option<Instant>>,
    give_up: Duration,
}

/// Whether the connection was refused (nothing listens at the endpoint).
fn is_refused(e: &HttpError) -> bool {
    if e.kind() != HttpErrorKind::Connect {
        return false;
    }
    let mut next: Option<&(dyn Error + 'static)> = e.source();
    while let Some(here) = next {
        if let Some(io) = here.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        next = here.source();
    }
    false
}

/// A refusal made final: the request is not tried again.
#[derive(Debug)]
struct RefusedFor {
    seconds: u64,
    last: HttpError,
}

impl fmt::Display for RefusedFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection refused on every try for {} s, given up",
            self.seconds
        )
    }
}

impl Error for RefusedFor {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.last)
    }
}

impl Watched {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let result = self.inner.execute(req).await;
        let mut since = self.refused_since.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(response) => {
                *since = None;
                Ok(response)
            }
            Err(e) if is_refused(&e) => {
                let first = *since.get_or_insert_with(Instant::now);
                if first.elapsed() < self.give_up {
                    return Err(e);
                }
                let seconds = first.elapsed().as_secs();
                Err(HttpError::new(
                    HttpErrorKind::Unknown,
                    RefusedFor { seconds, last: e },
                ))
            }
            Err(e) => Err(e),
        }
    }
}

impl HttpService for Watched {
    // The trait is `async_trait`'s: its method, written out.
    fn call<'life0, 'async_trait>(
        &'life0 self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(req))
    }
}
