//! The caches `serve` serves: one at the root (`serve CACHE`), or several, each under its name
//! (`serve --cache NAME=CACHE …`: `/NAME/nix-cache-info`, `/NAME/nar/…`, its listings at
//! `/NAME/_nar-tool/narinfos`, its searches at `/NAME/_nar-tool/lookup`, its files in bulk at
//! `/NAME/_nar-tool/files`). The server's own
//! things stay at `/_nar-tool/`, which no cache name can shadow (names do not start with `_`).

use super::*;

/// One cache served.
pub(super) struct Shelf {
    /// `None`: served at the root.
    pub(super) name: Option<String>,
    /// Only its keys are served from it, opened once each (no look by name first); shared with
    /// the bundles of files being sent (`bundle.rs`).
    pub(super) cache: Arc<dyn StorageRead>,
    /// The inspector's listings of it, reused for a while.
    pub(super) listings: json::Listings,
    /// Its lookup index, loaded for searches.
    pub(super) searches: search::Searches,
}

impl Shelf {
    /// Opens the caches, each of which must be a binary cache.
    pub(super) fn open_all(caches: &[(Option<String>, CacheLocation)]) -> io::Result<Vec<Shelf>> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if caches.is_empty() {
            return Err(invalid("no cache to serve".into()));
        }
        let unnamed = caches.iter().filter(|(n, _)| n.is_none()).count();
        if unnamed > 0 && caches.len() > 1 {
            return Err(invalid(
                "either one cache served at the root, or named ones (--cache NAME=CACHE), not both"
                    .into(),
            ));
        }
        let mut shelves: Vec<Shelf> = Vec::with_capacity(caches.len());
        for (name, location) in caches {
            if let Some(name) = name {
                auth::file::check_cache_name(name).map_err(invalid)?;
                if shelves.iter().any(|s| s.name.as_ref() == Some(name)) {
                    return Err(invalid(format!("the cache name {name} is given twice")));
                }
            }
            let cache: Arc<dyn StorageRead> = Arc::from(crate::host::open::open_read(location)?);
            if cache.stat(&CacheKey::CacheInfo)?.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{location} has no nix-cache-info: not a binary cache"),
                ));
            }
            shelves.push(Shelf {
                name: name.clone(),
                cache,
                listings: json::Listings::default(),
                searches: search::Searches::default(),
            });
        }
        Ok(shelves)
    }

    /// Every cache an auth file names must be served (a name not served is likely a typo).
    pub(super) fn check_names(shelves: &[Shelf], auth: &auth::Auth) -> Result<(), String> {
        for entry in auth.entries() {
            for cache in entry.caches.iter().flatten() {
                if !shelves.iter().any(|s| s.name.as_ref() == Some(cache)) {
                    let served: Vec<&str> =
                        shelves.iter().filter_map(|s| s.name.as_deref()).collect();
                    return Err(format!(
                        "the auth file allows {} the cache {cache}, which is not served (served: {})",
                        entry.name,
                        if served.is_empty() {
                            "one cache at the root; leave the caches field out".to_string()
                        } else {
                            served.join(", ")
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    /// The name an auth file calls it by (`""` for the one at the root).
    pub(super) fn auth_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

impl Site {
    /// The cache a decoded path is in, and the path within it (a key, a listing under
    /// `_nar-tool/`, or `""` for the cache's own root); `None` for the server's own things.
    pub(super) fn shelf_of<'a>(&self, rel: &'a str) -> Option<(&Shelf, &'a str)> {
        if rel.is_empty() || rel == "_nar-tool" {
            return None;
        }
        if let [root @ Shelf { name: None, .. }] = self.shelves.as_slice() {
            let listing = rel
                .strip_prefix("_nar-tool/")
                .is_none_or(|rest| json::Listing::of(rest).is_some() || rest == "files");
            return listing.then_some((root, rel));
        }
        let (first, rest) = rel.split_once('/').unwrap_or((rel, ""));
        let shelf = self
            .shelves
            .iter()
            .find(|s| s.name.as_deref() == Some(first))?;
        Some((shelf, rest))
    }

    /// What the caches are, for a page.
    pub(super) fn describe(&self) -> String {
        let names: Vec<String> = self
            .shelves
            .iter()
            .map(|s| match &s.name {
                None => s.cache.describe(),
                Some(name) => format!("/{name}/"),
            })
            .collect();
        names.join(", ")
    }
}
