//! Named locks in a bucket, shared or exclusive, held across processes and machines by marker
//! objects under `.nar-tool/locks/<name>/`: `x` for the exclusive holder (created only if
//! absent), `s-<owner>-<n>` for each shared one. A taker writes its marker first and then looks
//! for the other kind, backing off if it finds one: two takers racing both see each other's
//! marker (the store is strongly consistent), so at most one kind wins. Markers of owners that
//! are gone ([`super::owners`]) are ignored and removed.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::owners::{owner_is_gone, owner_of};
use super::{runtime, Shared};
use crate::cache::storage::StorageLock;

/// A marker object, deleted when dropped.
struct Marker {
    shared: Arc<Shared>,
    path: Path,
}

impl Drop for Marker {
    fn drop(&mut self) {
        let (shared, path) = (self.shared.clone(), self.path.clone());
        runtime::cleanup(async move { shared.store.delete(&path).await });
    }
}

/// Takes the lock `name`, waiting for it if `wait`.
pub fn lock(
    shared: &Arc<Shared>,
    name: &str,
    exclusive: bool,
    wait: bool,
) -> io::Result<Option<StorageLock>> {
    let owner = shared.owner()?.to_string();
    let mut delay = Duration::from_millis(20);
    loop {
        // The server's clock as of this try (no request: the owner record's time, advanced).
        let server_now = shared.server_now()?;
        let taken = {
            let shared = shared.clone();
            let (name, owner) = (name.to_string(), owner.clone());
            runtime::block_on(async move {
                try_once(&shared, &name, exclusive, &owner, server_now).await
            })??
        };
        if let Some(path) = taken {
            return Ok(Some(StorageLock::new(Marker {
                shared: shared.clone(),
                path,
            })));
        }
        if !wait {
            return Ok(None);
        }
        std::thread::sleep(delay + Duration::from_millis(u64::from(jitter())));
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Waits until no live owner holds the lock `name` exclusively (a marker left by an owner that
/// is gone is removed): one read of the exclusive marker when nobody holds it.
pub fn wait_while_exclusive(shared: &Arc<Shared>, name: &str) -> io::Result<()> {
    let x = shared.path(&format!(".nar-tool/locks/{name}/x"))?;
    let mut delay = Duration::from_millis(20);
    loop {
        let server_now = shared.server_now()?;
        let free = {
            let (shared, x) = (shared.clone(), x.clone());
            runtime::block_on(async move { remove_if_gone(&shared, &x, server_now).await })??
        };
        if free {
            return Ok(());
        }
        std::thread::sleep(delay + Duration::from_millis(u64::from(jitter())));
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

fn jitter() -> u8 {
    let mut b = [0u8];
    let _ = getrandom::fill(&mut b);
    b[0] / 4
}

async fn try_once(
    shared: &Arc<Shared>,
    name: &str,
    exclusive: bool,
    owner: &str,
    server_now: i64,
) -> io::Result<Option<Path>> {
    let folder = format!(".nar-tool/locks/{name}");
    let x = shared.path(&format!("{folder}/x"))?;
    let mine = if exclusive {
        x.clone()
    } else {
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        shared.path(&format!("{folder}/s-{owner}-{n}"))?
    };
    let mode = if exclusive {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    match shared
        .store
        .put_opts(&mine, owner.to_string().into(), PutOptions::from(mode))
        .await
    {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            // Held exclusively: by a live owner, or left by a dead one (removed, then retried).
            if !remove_if_gone(shared, &x, server_now).await? {
                return Ok(None);
            }
            return Box::pin(try_once(shared, name, exclusive, owner, server_now)).await;
        }
        Err(e) => return Err(shared.error(e, "taking the lock", &mine)),
    }
    let others: Vec<Path> = if exclusive {
        let folder = shared.path(&folder)?;
        let listed: Vec<_> = shared
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| shared.error(e, "listing the lock", &folder))?;
        listed
            .into_iter()
            .map(|m| m.location)
            .filter(|p| p.filename().is_some_and(|f| f.starts_with("s-")))
            .collect()
    } else {
        vec![x]
    };
    for other in others {
        if shared.store.head(&other).await.is_ok()
            && !remove_if_gone(shared, &other, server_now).await?
        {
            let _ = shared.store.delete(&mine).await;
            return Ok(None);
        }
    }
    Ok(Some(mine))
}

/// Removes the marker `path` if its owner is gone; whether it is gone now.
async fn remove_if_gone(shared: &Shared, path: &Path, server_now: i64) -> io::Result<bool> {
    let owner = match shared.store.get(path).await {
        Ok(got) => {
            let body = got
                .bytes()
                .await
                .map_err(|e| shared.error(e, "reading the lock", path))?;
            String::from_utf8_lossy(&body).trim().to_string()
        }
        Err(object_store::Error::NotFound { .. }) => return Ok(true),
        Err(e) => return Err(shared.error(e, "reading the lock", path)),
    };
    let owner = owner_of(&owner).to_string();
    if owner_is_gone(shared, &owner, server_now).await? {
        match shared.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(shared.error(e, "removing the stale lock", path)),
        }
    } else {
        Ok(false)
    }
}
