//! What writers that are gone left behind: their uploads, staged objects and records.

use std::io;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::{MultipartId, ObjectStoreExt};

use super::owners::{owner_is_gone, owner_of};
use super::Shared;
use crate::cache::layout::KeyDir;

/// Aborts the uploads of owners that are gone, deletes their staged objects, lock markers
/// and records.
pub async fn abandoned(shared: &Arc<Shared>, server_now: i64) -> io::Result<()> {
    let state = shared.path(".nar-tool/")?;
    let listed: Vec<object_store::ObjectMeta> = shared
        .store
        .list(Some(&state))
        .try_collect()
        .await
        .map_err(|e| shared.error(e, "listing", &state))?;
    let mine = shared.owner()?.to_string();
    let mut gone = std::collections::BTreeMap::<String, bool>::new();
    for meta in listed {
        let rel = meta
            .location
            .as_ref()
            .strip_prefix(state.as_ref())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let mut parts = rel.split('/');
        let (kind, name) = (
            parts.next().unwrap_or_default(),
            parts.next_back().unwrap_or_default(),
        );
        let owner = match kind {
            "uploads" | "staging" => owner_of(name).to_string(),
            "owners" => name.to_string(),
            "locks" => continue, // checked by whoever takes the lock
            _ => continue,
        };
        if owner == mine {
            continue;
        }
        let is_gone = match gone.get(&owner) {
            Some(g) => *g,
            None => {
                let g = owner_is_gone(shared, &owner, server_now).await?;
                gone.insert(owner.clone(), g);
                g
            }
        };
        if !is_gone {
            continue;
        }
        if kind == "uploads" {
            abort_recorded(shared, &meta.location).await?;
        }
        if kind != "owners" {
            match shared.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(shared.error(e, "deleting", &meta.location)),
            }
        }
    }
    for (owner, is_gone) in gone {
        if is_gone {
            let record = shared.path(&format!(".nar-tool/owners/{owner}"))?;
            let _ = shared.store.delete(&record).await;
        }
    }
    Ok(())
}

/// Aborts the multipart upload a record names (`<object path>\n<upload id>\n`).
async fn abort_recorded(shared: &Shared, record: &object_store::path::Path) -> io::Result<()> {
    let body = match shared.store.get(record).await {
        Ok(got) => got
            .bytes()
            .await
            .map_err(|e| shared.error(e, "reading", record))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(shared.error(e, "reading", record)),
    };
    let text = String::from_utf8_lossy(&body);
    let mut lines = text.lines();
    let (Some(temp), Some(id)) = (lines.next(), lines.next()) else {
        return Ok(()); // a record cut short: nothing to abort by it
    };
    let Ok(temp) = object_store::path::Path::parse(temp) else {
        return Ok(());
    };
    // An upload to a staging key (its object deleted too), or to a NAR's key (a large copy,
    // module `big_copy`, or a NAR uploaded straight to its key, module `staged`: only the
    // upload is aborted, the key may hold a NAR); a record naming anything else is not ours to
    // act on.
    let staging = temp
        .as_ref()
        .starts_with(shared.path(".nar-tool/staging/")?.as_ref());
    if !staging
        && !temp
            .as_ref()
            .starts_with(shared.path(KeyDir::Nar.prefix())?.as_ref())
    {
        return Ok(());
    }
    if let Some(multipart) = &shared.multipart {
        let id: MultipartId = id.to_string();
        let _ = multipart.abort_multipart(&temp, &id).await;
    }
    if !staging {
        return Ok(());
    }
    match shared.store.delete(&temp).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(shared.error(e, "deleting", &temp)),
    }
}
