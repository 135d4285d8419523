//! A real S3 server for the object-storage tests: SeaweedFS, started by `scripts/s3-server.sh`.
//!
//! `scripts/test.sh` starts one for the whole run and names its `s3.env` in
//! `NAR_TOOL_TEST_S3_ENV`; a test binary run alone starts its own, which stops when the binary
//! ends (`--watch`). Each test works under a prefix of its own in the one bucket, so tests run in
//! parallel without seeing each other's objects.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nar_tool::cache::location::{CacheLocation, S3Location};
use nar_tool::host::object::{Credentials, ObjectStorage, S3Options};

/// A running server and how to reach it.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    /// The bucket over plain, unsigned HTTP (anonymous may read and list it).
    pub anon_url: String,
    pub key: String,
    pub secret: String,
    dir: PathBuf,
    /// Stopped when dropped (a private server); the shared one lives as long as the run.
    private: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server.sh")
}

fn read_env(file: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("reading the S3 server's settings {}: {e}", file.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl S3Server {
    fn from_dir(dir: PathBuf, private: bool) -> S3Server {
        let env = read_env(&dir.join("s3.env"));
        let get = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("{k} missing from s3.env"))
                .clone()
        };
        S3Server {
            endpoint: get("NAR_TOOL_S3_ENDPOINT"),
            bucket: get("NAR_TOOL_S3_BUCKET"),
            anon_url: get("NAR_TOOL_S3_ANON_URL"),
            key: get("AWS_ACCESS_KEY_ID"),
            secret: get("AWS_SECRET_ACCESS_KEY"),
            dir,
            private,
        }
    }

    /// Starts a server in `dir` (its data kept there: starting again in the same `dir` brings
    /// the same objects back, on new ports).
    pub fn start_in(dir: &Path, private: bool) -> S3Server {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir)
            .args(["--watch", &std::process::id().to_string()])
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "starting the S3 server failed (run scripts/setup.sh?): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        S3Server::from_dir(dir.to_path_buf(), private)
    }

    /// Stops it (its data stays in its folder).
    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "stopping the S3 server failed");
    }

    /// `host:port` of the endpoint.
    pub fn host_port(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// A prefix no other test uses.
    pub fn fresh_prefix(&self, name: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!(
            "{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The `s3://` URL of the cache under `prefix`, with Nix's parameters.
    pub fn url(&self, prefix: &str) -> String {
        self.url_of(&self.bucket, prefix)
    }

    /// The `s3://` URL of `prefix` in another bucket of this server.
    pub fn url_of(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&scheme=http&region=us-east-1",
            self.host_port()
        )
    }

    pub fn location(&self, prefix: &str) -> S3Location {
        match CacheLocation::parse(&self.url(prefix)).unwrap() {
            CacheLocation::S3(s3) => s3,
            other => panic!("not an s3 location: {other:?}"),
        }
    }

    /// The cache under `prefix`, opened with the writing identity.
    pub fn storage(&self, prefix: &str) -> ObjectStorage {
        self.storage_with(prefix, 8 << 20)
    }

    pub fn storage_with(&self, prefix: &str, part_size: usize) -> ObjectStorage {
        ObjectStorage::s3_with(
            &self.location(prefix),
            &S3Options {
                part_size,
                credentials: Some(Credentials {
                    key: self.key.clone(),
                    secret: self.secret.clone(),
                }),
                ..Default::default()
            },
        )
        .expect("opening the test bucket")
    }

    /// The cache under `prefix` over plain HTTP, as Nix substitutes from it.
    pub fn anon_base(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.anon_url)
    }

    /// `nar-tool` with the writing identity in its environment (and short retries).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(super::bin());
        self.credentials_into(&mut cmd);
        cmd
    }

    pub fn credentials_into(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("NAR_TOOL_S3_RETRY_SECONDS", "5");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.private {
            self.stop();
        }
    }
}

/// The server every test shares.
pub fn server() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var_os("NAR_TOOL_TEST_S3_ENV") {
        Some(env) => {
            let env = PathBuf::from(env);
            S3Server::from_dir(env.parent().unwrap().to_path_buf(), false)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("nar-tool-s3-{}", std::process::id()));
            S3Server::start_in(&dir, false)
        }
    })
}
