//! A cache's lookup index in the browser: `CacheIndex` holds the manifest and the shards given
//! to it (the core's [`IndexTable`]), and answers the inspector's table (search, sort, a page of
//! rows, totals), lookups by hash part, references, referrers and closures. The page fetches the
//! shards itself: each question that needs more has a `shardsFor…` companion saying which.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{err, to_value, CacheGraph, JsResult};
use crate::cache::index::table::{IndexTable, Row, SortKey};

/// One entry as the page sees it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsRow {
    id: u32,
    hash_part: String,
    base_name: String,
    store_path: String,
    /// The name after the hash part, and it split like Nix's `DrvName`.
    name: String,
    pname: String,
    version: String,
    /// Whether the cache has its narinfo (else it is only referenced).
    present: bool,
    nar_size: Option<u64>,
    file_size: Option<u64>,
    ref_count: usize,
}

/// A lookup index being read: `new CacheIndex(manifestBytes)`, then `addShard(n, bytes)` for
/// the shards `nar-tool-index/<shardName(n)>` as questions need them.
#[wasm_bindgen]
pub struct CacheIndex {
    table: IndexTable,
    /// The ids the last `query` selected, in its order.
    view: Vec<u32>,
}

#[wasm_bindgen]
impl CacheIndex {
    /// Reads and checks a manifest (`nar-tool-index/index.json`); throws if it is not one.
    #[wasm_bindgen(constructor)]
    pub fn new(manifest: &[u8]) -> JsResult<CacheIndex> {
        Ok(CacheIndex {
            table: IndexTable::new(manifest).map_err(err)?,
            view: Vec::new(),
        })
    }

    #[wasm_bindgen(getter, js_name = storeDir)]
    pub fn store_dir(&self) -> String {
        self.table.store_dir().as_str().to_string()
    }

    /// Paths with a narinfo.
    #[wasm_bindgen(getter)]
    pub fn paths(&self) -> f64 {
        self.table.manifest().paths as f64
    }

    /// Entries: the paths, and the references that have no narinfo.
    #[wasm_bindgen(getter)]
    pub fn entries(&self) -> f64 {
        self.table.manifest().entries as f64
    }

    #[wasm_bindgen(getter, js_name = shardCount)]
    pub fn shard_count(&self) -> usize {
        self.table.manifest().shards.len()
    }

    #[wasm_bindgen(getter, js_name = loadedShards)]
    pub fn loaded_shards(&self) -> usize {
        self.table.loaded_shards()
    }

    /// Whether every shard is loaded.
    #[wasm_bindgen(getter)]
    pub fn complete(&self) -> bool {
        self.table.is_complete()
    }

    /// Shard `n`'s file name in `nar-tool-index/`.
    #[wasm_bindgen(js_name = shardName)]
    pub fn shard_name(&self, n: usize) -> JsResult<String> {
        Ok(self.shard_ref(n)?.name.clone())
    }

    /// Shard `n`'s size in bytes (compressed), as the manifest gives it.
    #[wasm_bindgen(js_name = shardSize)]
    pub fn shard_size(&self, n: usize) -> JsResult<f64> {
        Ok(self.shard_ref(n)?.size as f64)
    }

    fn shard_ref(&self, n: usize) -> JsResult<&crate::cache::index::format::ShardRef> {
        self.table
            .manifest()
            .shards
            .get(n)
            .ok_or_else(|| err(format!("shard {n} of {}", self.shard_count())))
    }

    /// Checks shard `n`'s bytes against the manifest and keeps its entries; throws if they are
    /// not what the manifest names.
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, n: usize, bytes: &[u8]) -> JsResult<()> {
        self.table.add_shard(n, bytes).map_err(err)
    }

    /// The shards not loaded yet, in order.
    #[wasm_bindgen(js_name = missingShards)]
    pub fn missing_shards(&self) -> Vec<usize> {
        self.table.missing_shards()
    }

    /// The shard a lookup of `hash_part` needs (`undefined`: no entry can have it).
    #[wasm_bindgen(js_name = shardOfHash)]
    pub fn shard_of_hash(&self, hash_part: &str) -> Option<usize> {
        self.table.shard_of_hash(hash_part)
    }

    /// The entry with `hash_part` (`null` if none); throws if its shard is not loaded.
    pub fn lookup(&self, hash_part: &str) -> JsResult<JsValue> {
        match self.table.find(hash_part) {
            Ok(Some(row)) => to_value(&self.js_row(&row)),
            Ok(None) => Ok(JsValue::NULL),
            Err(n) => Err(not_loaded(&[n])),
        }
    }

    /// The entry with `hash_part` if its shard is loaded: the entry, `null` if there is none,
    /// `undefined` if the shard is not loaded.
    #[wasm_bindgen(js_name = lookupLoaded)]
    pub fn lookup_loaded(&self, hash_part: &str) -> JsResult<JsValue> {
        match self.table.find(hash_part) {
            Ok(Some(row)) => to_value(&self.js_row(&row)),
            Ok(None) => Ok(JsValue::NULL),
            Err(_) => Ok(JsValue::UNDEFINED),
        }
    }

    /// `{ count, narSize, fileSize }` of every loaded entry with a narinfo.
    pub fn totals(&self) -> JsResult<JsValue> {
        let ids: Vec<u32> = self.table.present_rows().map(|r| r.id).collect();
        totals_of(&self.table, &ids)
    }

    /// Selects the loaded entries with a narinfo whose base name contains `search` (any case;
    /// all for an empty one), sorted by `sort_key` (`name`, `version`, `hash`, `narSize`,
    /// `fileSize`, `refs`); returns how many. `rows` pages through them.
    pub fn query(&mut self, search: &str, sort_key: &str, descending: bool) -> JsResult<usize> {
        let key = SortKey::parse(sort_key).ok_or_else(|| err(format!("sort key {sort_key:?}")))?;
        self.view = self.table.query(search.trim(), key, descending);
        Ok(self.view.len())
    }

    /// Rows `start..start + count` of the last `query`.
    pub fn rows(&self, start: usize, count: usize) -> JsResult<JsValue> {
        let end = start.saturating_add(count).min(self.view.len());
        let rows: Vec<JsRow> = self.view[start.min(end)..end]
            .iter()
            .filter_map(|&id| self.table.row(id).ok().flatten())
            .map(|r| self.js_row(&r))
            .collect();
        to_value(&rows)
    }

    /// `{ count, narSize, fileSize }` of the last `query`.
    #[wasm_bindgen(js_name = viewTotals)]
    pub fn view_totals(&self) -> JsResult<JsValue> {
        totals_of(&self.table, &self.view)
    }

    /// The shards `references(path)` still needs (none: it can be asked).
    #[wasm_bindgen(js_name = shardsForReferences)]
    pub fn shards_for_references(&self, store_path: &str) -> JsResult<Vec<usize>> {
        match self.references_of(store_path)? {
            Ok(_) => Ok(Vec::new()),
            Err(need) => Ok(need),
        }
    }

    /// The references of `store_path`, as store paths (sorted); throws if a shard is missing.
    pub fn references(&self, store_path: &str) -> JsResult<Vec<String>> {
        self.references_of(store_path)?
            .map_err(|need| not_loaded(&need))
    }

    /// The shards `closureGraph(path)` still needs (none: it can be asked). A closure may need
    /// more once these are in: ask until none is left.
    #[wasm_bindgen(js_name = shardsForClosure)]
    pub fn shards_for_closure(&self, store_path: &str) -> JsResult<Vec<usize>> {
        let id = self.id_of(store_path)?;
        Ok(match self.table.closure_graph(&[id]) {
            Ok(_) => Vec::new(),
            Err(need) => need.into_iter().collect(),
        })
    }

    /// The reference graph of `store_path`'s closure (a `CacheGraph`: closure sizes, the tree of
    /// what each path adds, why-depends); throws if a shard is missing.
    #[wasm_bindgen(js_name = closureGraph)]
    pub fn closure_graph(&self, store_path: &str) -> JsResult<CacheGraph> {
        let id = self.id_of(store_path)?;
        let graph = self
            .table
            .closure_graph(&[id])
            .map_err(|need| not_loaded(&need.into_iter().collect::<Vec<_>>()))?;
        Ok(CacheGraph {
            graph,
            store_dir: Some(self.table.store_dir().clone()),
        })
    }

    /// The paths that reference `store_path` (itself included if it refers to itself), sorted;
    /// needs every shard (throws otherwise).
    pub fn referrers(&mut self, store_path: &str) -> JsResult<Vec<String>> {
        let id = self.id_of(store_path)?;
        let ids = self
            .table
            .referrers(id)
            .map_err(|need| not_loaded(&need))?
            .to_vec();
        Ok(self.store_paths(&ids))
    }

    /// The narinfo file names of every path with a narinfo (`<hash part>.narinfo`, sorted);
    /// needs every shard (throws otherwise).
    #[wasm_bindgen(js_name = narinfoNames)]
    pub fn narinfo_names(&self) -> JsResult<Vec<String>> {
        if !self.table.is_complete() {
            return Err(not_loaded(&self.table.missing_shards()));
        }
        Ok(self
            .table
            .present_rows()
            .map(|r| format!("{}.narinfo", r.hash_part()))
            .collect())
    }
}

impl CacheIndex {
    fn js_row(&self, r: &Row) -> JsRow {
        let (pname, version) = r.name_and_version();
        JsRow {
            id: r.id,
            hash_part: r.hash_part().to_string(),
            base_name: r.base_name.to_string(),
            store_path: self.table.store_path(r),
            name: r.name().to_string(),
            pname: pname.to_string(),
            version: version.to_string(),
            present: r.present(),
            nar_size: r.nar_size,
            file_size: r.file_size,
            ref_count: r.references.len(),
        }
    }

    /// The id of a store path (or base name, or hash part) with an entry; throws if it has
    /// none or its shard is not loaded.
    fn id_of(&self, store_path: &str) -> JsResult<u32> {
        let base = store_path.rsplit('/').next().unwrap_or(store_path);
        let hash = base.get(..32).unwrap_or(base);
        match self.table.find(hash) {
            Ok(Some(row)) => Ok(row.id),
            Ok(None) => Err(err(format!("{store_path} is not in the index"))),
            Err(n) => Err(not_loaded(&[n])),
        }
    }

    fn references_of(&self, store_path: &str) -> JsResult<Result<Vec<String>, Vec<usize>>> {
        let id = self.id_of(store_path)?;
        let row = self.table.row(id).ok().flatten().expect("found above");
        let mut need: Vec<usize> = row
            .references
            .iter()
            .filter_map(|&r| self.table.row(r).err())
            .collect();
        need.sort_unstable();
        need.dedup();
        if !need.is_empty() {
            return Ok(Err(need));
        }
        Ok(Ok(self.store_paths(row.references)))
    }

    /// Store paths of ids of loaded entries, sorted.
    fn store_paths(&self, ids: &[u32]) -> Vec<String> {
        let mut paths: Vec<String> = ids
            .iter()
            .filter_map(|&id| self.table.row(id).ok().flatten())
            .map(|r| self.table.store_path(&r))
            .collect();
        paths.sort_unstable();
        paths
    }
}

fn totals_of(table: &IndexTable, ids: &[u32]) -> JsResult<JsValue> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out {
        count: usize,
        nar_size: u64,
        file_size: u64,
    }
    let w = table.totals(ids);
    to_value(&Out {
        count: ids.len(),
        nar_size: w.nar_size,
        file_size: w.file_size,
    })
}

fn not_loaded(shards: &[usize]) -> JsError {
    err(format!(
        "index shards {shards:?} are not loaded (add them first)"
    ))
}
