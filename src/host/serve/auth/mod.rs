//! Access control of `serve --auth FILE` (`file.rs`): who may read which cache. A client names
//! itself with HTTP Basic (what Nix sends from its `netrc-file`) or a bearer token
//! (`header.rs`); its secret is verified against the Argon2 hash in constant time, and a name the
//! file does not have is verified against a dummy hash of the same cost, so a wrong name and a
//! wrong secret take the same time. Verifications run on the blocking pool, a few at once;
//! successes are remembered briefly (`remembered.rs`), failures slow their address down
//! (`penalty.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::guard::ClientKey;

pub mod file;
pub mod header;
mod penalty;
mod remembered;

use file::Entry;
use penalty::Penalties;
use remembered::Remembered;

/// Hash verifications at once (each takes its Argon2 memory, 19 MiB by default).
const MAX_VERIFYING: usize = 4;
/// The realm of the challenge.
pub const REALM: &str = "nar-tool";

/// The principals of an auth file, and what is remembered about clients.
pub struct Auth {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// A hash of a random secret, at the cost of the first entry's: what an unknown name is
    /// verified against.
    dummy: String,
    remembered: Remembered,
    penalties: Penalties,
    verifying: Arc<Semaphore>,
}

/// What a request's credentials decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Verified, and allowed the cache.
    Allowed,
    /// Verified, but not for this cache (403).
    NotThisCache,
    /// No credentials, or wrong ones (401), with why (for the log, never for the client).
    Denied(&'static str),
}

impl Auth {
    /// Reads an auth file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the auth file {}: {e}", path.display()))?;
        let entries =
            file::parse(&text).map_err(|e| format!("the auth file {}: {e}", path.display()))?;
        if entries.is_empty() {
            return Err(format!(
                "the auth file {} names nobody: add someone with `nar-tool auth add {} NAME`",
                path.display(),
                path.display()
            ));
        }
        Auth::new(entries)
    }

    /// The principals `entries` (at least one: its hash sets the dummy's cost).
    pub fn new(entries: Vec<Entry>) -> Result<Auth, String> {
        let first = entries.first().ok_or("an auth file naming nobody")?;
        let dummy = dummy_like(&first.hash)?;
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(Auth {
            entries,
            by_name,
            dummy,
            remembered: Remembered::new(),
            penalties: Penalties::default(),
            verifying: Arc::new(Semaphore::new(MAX_VERIFYING)),
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Decides a request for `cache` from `client` with this `Authorization` header (if any):
    /// waits out the client's penalty, verifies, and on failure waits the delay it earns.
    pub async fn check(
        self: &Arc<Auth>,
        authorization: Option<&[u8]>,
        client: ClientKey,
        cache: &str,
    ) -> Decision {
        let Some(value) = authorization else {
            return Decision::Denied("no credentials");
        };
        let verified = match header::parse(value) {
            Err(why) => Err(why),
            Ok(creds) => self.verify(creds, client).await,
        };
        match verified {
            Ok(i) if self.entries[i].may_read(cache) => Decision::Allowed,
            Ok(_) => Decision::NotThisCache,
            Err(why) => {
                let delay = self.penalties.fail(client, Instant::now());
                tokio::time::sleep(delay).await;
                Decision::Denied(why)
            }
        }
    }

    /// The index of the principal these credentials prove.
    async fn verify(
        self: &Arc<Auth>,
        creds: header::Credentials,
        client: ClientKey,
    ) -> Result<usize, &'static str> {
        if let Some(i) = self
            .remembered
            .get(&creds.name, &creds.secret, Instant::now())
        {
            return Ok(i);
        }
        tokio::time::sleep(self.penalties.wait(client, Instant::now())).await;
        let Ok(_turn) = self.verifying.clone().acquire_owned().await else {
            return Err("shutting down");
        };
        let auth = self.clone();
        tokio::task::spawn_blocking(move || {
            let found = auth.by_name.get(&creds.name).copied();
            let hash = found.map_or(auth.dummy.as_str(), |i| &auth.entries[i].hash);
            // Parsed when loaded: cannot fail here, and if it did, the secret is wrong.
            let ok = PasswordHash::new(hash)
                .is_ok_and(|h| Argon2::default().verify_password(&creds.secret, &h).is_ok());
            match (found, ok) {
                (Some(i), true) => {
                    auth.remembered
                        .put(&creds.name, &creds.secret, i, Instant::now());
                    Ok(i)
                }
                (Some(_), false) => Err("wrong secret"),
                (None, _) => Err("unknown name"),
            }
        })
        .await
        .unwrap_or(Err("verification failed"))
    }
}

/// A hash of a random secret with the algorithm, version and cost of `model`.
fn dummy_like(model: &str) -> Result<String, String> {
    let parsed = PasswordHash::new(model).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
        None => Version::default(),
    };
    let mut params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    if let Some(out) = parsed.hash {
        params = Params::new(
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            Some(out.len()),
        )
        .map_err(|e| e.to_string())?;
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&random[..16]).map_err(|e| e.to_string())?;
    Argon2::new(algorithm, version, params)
        .hash_password(&random[16..], &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::net::Ipv4Addr;

    fn auth() -> Arc<Auth> {
        let hash = file::hash_secret(b"right").unwrap();
        Arc::new(
            Auth::new(vec![
                Entry {
                    name: "alice".into(),
                    hash: hash.clone(),
                    caches: None,
                },
                Entry {
                    name: "bob".into(),
                    hash,
                    caches: Some(vec!["public".into()]),
                },
            ])
            .unwrap(),
        )
    }

    fn basic(s: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn decisions() {
        let a = auth();
        let ip = ClientKey::of(Ipv4Addr::LOCALHOST.into());
        let check = |h: Option<Vec<u8>>, cache: &'static str| {
            let a = a.clone();
            async move { a.check(h.as_deref(), ip, cache).await }
        };
        assert_eq!(
            check(Some(basic("alice:right")), "x").await,
            Decision::Allowed
        );
        assert_eq!(
            check(Some(b"Bearer bob.right".to_vec()), "public").await,
            Decision::Allowed
        );
        assert_eq!(
            check(Some(basic("bob:right")), "private").await,
            Decision::NotThisCache
        );
        assert_eq!(check(None, "x").await, Decision::Denied("no credentials"));
        assert_eq!(
            check(Some(basic("alice:wrong")), "x").await,
            Decision::Denied("wrong secret")
        );
        assert_eq!(
            check(Some(basic("carol:right")), "x").await,
            Decision::Denied("unknown name")
        );
        assert_eq!(
            check(Some(b"Digest x".to_vec()), "x").await,
            Decision::Denied("an Authorization scheme other than Basic or Bearer")
        );
    }

    #[test]
    fn the_dummy_costs_what_a_real_hash_costs() {
        let model = file::hash_secret(b"x").unwrap();
        let dummy = dummy_like(&model).unwrap();
        let (m, d) = (
            PasswordHash::new(&model).unwrap(),
            PasswordHash::new(&dummy).unwrap(),
        );
        assert_eq!(m.algorithm, d.algorithm);
        assert_eq!(m.params, d.params);
        assert_eq!(m.hash.unwrap().len(), d.hash.unwrap().len());
        assert_ne!(m.salt, d.salt);
    }
}
