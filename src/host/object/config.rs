//! Connecting to a bucket as every S3 tool does: Nix's URL parameters first, then the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`), then the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) with its profiles (`profile=`,
//! else `AWS_PROFILE`, else `default`). Without any credentials requests go unsigned, as
//! anonymous reads of a public bucket do; a write is then refused by the server, and the error
//! says where credentials are looked for.

use std::env;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::multipart::MultipartStore;
use object_store::signer::Signer;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::cache::location::S3Location;

/// A connected object store and what messages need to know of it.
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    /// Multipart uploads by id (S3): large objects are streamed in parts.
    pub multipart: Option<Arc<dyn MultipartStore>>,
    /// Presigned URLs (S3), for `serve` to redirect to.
    pub signer: Option<Arc<dyn Signer>>,
    /// `http://127.0.0.1:8333` or `AWS (us-east-1)`.
    pub endpoint: String,
    /// What to check when a request is denied.
    pub credentials_hint: String,
}

/// How long requests are retried (with exponential backoff) before an error is reported:
/// `NAR_TOOL_S3_RETRY_SECONDS`, 30 s by default.
fn retry_time() -> Duration {
    let seconds = env::var("NAR_TOOL_S3_RETRY_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

/// Retries for [`retry_time`] (the number of tries is not what bounds them: backoff up to 5 s
/// between tries); a refused connection is given up sooner ([`super::refusals`]).
fn retry() -> RetryConfig {
    let time = retry_time();
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: if time.is_zero() { 0 } else { 1000 },
        retry_timeout: time,
    }
}

/// The client's connections, refusals watched.
fn connector() -> super::refusals::Connector {
    super::refusals::Connector::new(super::refusals::refused_give_up(retry_time()))
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300))
        .with_pool_max_idle_per_host(16)
}

/// Credentials found for a profile in the shared credentials file.
struct Profile {
    key: String,
    secret: String,
    token: Option<String>,
    region: Option<String>,
}

fn home_file(var: &str, rel: &str) -> Option<PathBuf> {
    env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(rel)))
}

/// Reads `profile` from the shared credentials file (and its region from the config file).
fn read_profile(profile: &str, required: bool) -> io::Result<Option<Profile>> {
    let Some(path) = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials") else {
        return Ok(None);
    };
    let ini = match ini::Ini::load_from_file(&path) {
        Ok(ini) => ini,
        Err(ini::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound && !required => {
            return Ok(None)
        }
        Err(e) => {
            return Err(io::Error::other(format!(
                "reading the credentials file {}: {e}",
                path.display()
            )))
        }
    };
    let Some(section) = ini.section(Some(profile)) else {
        if required {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the profile {profile:?} is not in the credentials file {}",
                    path.display()
                ),
            ));
        }
        return Ok(None);
    };
    let (Some(key), Some(secret)) = (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) else {
        return Err(io::Error::other(format!(
            "the profile {profile:?} in {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        )));
    };
    let region = home_file("AWS_CONFIG_FILE", ".aws/config")
        .and_then(|p| ini::Ini::load_from_file(p).ok())
        .and_then(|config| {
            let name = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            config
                .section(Some(name))?
                .get("region")
                .map(str::to_string)
        });
    Ok(Some(Profile {
        key: key.to_string(),
        secret: secret.to_string(),
        token: section.get("aws_session_token").map(str::to_string),
        region,
    }))
}

/// Keys given by the caller instead of found (tests, embedding programs).
#[derive(Clone)]
pub struct Credentials {
    pub key: String,
    pub secret: String,
}

/// Connects to the bucket of `loc`, with `given` keys or those found as described above.
pub fn s3(loc: &S3Location, given: Option<&Credentials>) -> io::Result<Backend> {
    let (env_key, env_secret) = match given {
        Some(c) => (Some(c.key.clone()), Some(c.secret.clone())),
        None => (
            env::var("AWS_ACCESS_KEY_ID").ok().filter(|k| !k.is_empty()),
            env::var("AWS_SECRET_ACCESS_KEY").ok(),
        ),
    };
    let profile_name = loc
        .profile
        .clone()
        .or_else(|| env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
    // An explicit profile beats the environment's keys, as with the AWS tools' `--profile`.
    let profile = match (&loc.profile, &env_key) {
        _ if given.is_some() => None,
        (Some(p), _) => read_profile(p, true)?,
        (None, Some(_)) => None,
        (None, None) => read_profile(
            profile_name.as_deref().unwrap_or("default"),
            profile_name.is_some(),
        )?,
    };
    let mut builder = AmazonS3Builder::new().with_bucket_name(&loc.bucket);
    let mut hint = String::new();
    match (&profile, &env_key, &env_secret) {
        (Some(p), _, _) => {
            builder = builder
                .with_access_key_id(&p.key)
                .with_secret_access_key(&p.secret);
            if let Some(t) = &p.token {
                builder = builder.with_token(t);
            }
            hint = format!(
                "check the keys of profile {:?} and the bucket's policy",
                profile_name.as_deref().unwrap_or("default")
            );
        }
        (None, Some(key), Some(secret)) => {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            if let Ok(t) = env::var("AWS_SESSION_TOKEN") {
                builder = builder.with_token(t);
            }
            hint =
                "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket's policy".to_string();
        }
        (None, Some(_), None) => {
            return Err(io::Error::other(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            ))
        }
        (None, None, _) => {
            builder = builder.with_skip_signature(true);
            hint.push_str(
                "no credentials were found, so the request went unsigned: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (profile= in the URL, or AWS_PROFILE)",
            );
        }
    }
    let region = loc
        .region
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.region.clone()))
        .or_else(|| env::var("AWS_REGION").ok())
        .or_else(|| env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_string());
    builder = builder.with_region(&region);
    let endpoint = match &loc.endpoint {
        Some(e) if e.contains("://") => Some(e.clone()),
        Some(e) => Some(format!(
            "{}://{e}",
            loc.scheme.as_deref().unwrap_or("https")
        )),
        None => env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()),
    };
    let shown = match &endpoint {
        Some(e) => {
            builder = builder
                .with_endpoint(e)
                .with_virtual_hosted_style_request(false);
            e.clone()
        }
        None => format!("AWS S3 ({region})"),
    };
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let s3 = builder
        .with_client_options(client_options(allow_http))
        .with_retry(retry())
        .with_http_connector(connector())
        .build()
        .map_err(|e| io::Error::other(format!("configuring s3://{}: {e}", loc.bucket)))?;
    let s3 = Arc::new(s3);
    Ok(Backend {
        store: s3.clone(),
        multipart: Some(s3.clone()),
        signer: Some(s3),
        endpoint: shown,
        credentials_hint: hint,
    })
}

/// Connects to a cache served over HTTP(S) at `base`, with the credentials a netrc file has
/// for its host (`crate::host::netrc`).
pub fn http(base: &str) -> io::Result<Backend> {
    let (headers, hint) = http_credentials(base)?;
    let store = HttpBuilder::new()
        .with_url(base)
        .with_client_options(client_options(true).with_default_headers(headers))
        .with_retry(retry())
        .with_http_connector(connector())
        .build()
        .map_err(|e| io::Error::other(format!("configuring {base}: {e}")))?;
    Ok(Backend {
        store: Arc::new(store),
        multipart: None,
        signer: None,
        endpoint: base.to_string(),
        credentials_hint: hint,
    })
}

/// The headers every request to the HTTP cache at `base` carries (its credentials, if a netrc
/// file has them), and what to check when the server refuses a request.
pub fn http_credentials(base: &str) -> io::Result<(http::HeaderMap, String)> {
    let host = url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    let hint = match crate::host::netrc::for_host(&host)? {
        Some(c) => {
            headers.insert(http::header::AUTHORIZATION, c.basic_header());
            format!(
                "the server refused {:?}'s credentials for {host} from {}",
                c.login(),
                c.source.display()
            )
        }
        None => {
            let looked: Vec<String> = crate::host::netrc::candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "if the server asks for credentials, put `machine {host} login USER password SECRET` in a netrc file (--netrc-file FILE; looked for {})",
                looked.join(", ")
            )
        }
    };
    Ok((headers, hint))
}
