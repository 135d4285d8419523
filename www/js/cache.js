// A cache as the page sees it: its nix-cache-info and every narinfo loaded (fetched with bounded
// concurrency, parsed by the wasm layer), with the derived columns of the paths table and the
// reference graph (the wasm CacheGraph: closures and their sizes, what each path adds,
// referrers, why-depends). A cache that cannot be
// listed (any HTTP cache but nar-tool serve) is explored from roots the user gives, following
// references. A cache with a lookup index (nar-tool-index/) is read through it instead, at any
// size: the table, search, sort, closures and referrers come from the index (the package's
// CacheIndex, shards fetched as needed), and a path's narinfo is fetched when it is opened.

import { pool, errorMessage } from './util.js';

const decoder = new TextDecoder();
const TEXTS_PAGE = 1000; // nar-tool serve's most

/** `{ count, narSize, fileSize }` of entries (a size not known counts 0). */
export function sumSizes(entries) {
  let narSize = 0;
  let fileSize = 0;
  for (const e of entries) {
    narSize += e.narSize ?? 0;
    fileSize += e.fileSize ?? 0;
  }
  return { count: entries.length, narSize, fileSize };
}

export class Cache {
  constructor(wasm, source) {
    this.wasm = wasm;
    this.source = source;
    this.entries = [];
    this.byHash = new Map();
    this.listed = false;
    this.narinfoNames = [];
    this.narFiles = null;
    this.cacheInfo = null;
    this.cacheInfoText = null;
    this.cacheInfoError = null;
    this._graph = null;
    /** Narinfos loaded since the graph was last asked for, added to it in one call. */
    this._graphPending = [];
    this.storeDir = '/nix/store';
    /** The cache's lookup index (the package's CacheIndex), or null. */
    this.index = null;
    this.indexError = null;
    /** Index mode: the closure graph of each path opened (by hash part), and its referrers. */
    this._closureGraphs = new Map();
    this._referrers = new Map();
    /** Index mode: rows of the index as entries without a narinfo loaded, by hash part. */
    this._light = new Map();
  }

  get label() {
    return this.source.label;
  }

  /** Reads nix-cache-info and lists the narinfos when the cache can be listed. */
  async open() {
    const bytes = await this.source.readFile('nix-cache-info');
    if (!bytes) throw new Error(`${this.label} has no nix-cache-info: not a binary cache`);
    this.cacheInfoText = decoder.decode(bytes);
    try {
      this.cacheInfo = this.wasm.parseCacheInfo(this.cacheInfoText);
      if (this.cacheInfo.storeDir) this.storeDir = this.cacheInfo.storeDir;
    } catch (e) {
      this.cacheInfoError = errorMessage(e);
    }
    if (this.wasm.CacheIndex) {
      try {
        this.index = await this.wasm.CacheIndex.open(this.source);
      } catch (e) {
        if (/\bHTTP 401\b/.test(errorMessage(e))) throw e;
        this.indexError = errorMessage(e);
      }
    }
    if (this.index) {
      this.listed = true;
      this.storeDir = this.index.storeDir;
      return;
    }
    const names = await this.source.listNarinfos();
    this.listed = names != null;
    this.narinfoNames = names ?? [];
    this.narFiles = this.listed ? await this.source.listNarFiles() : null;
  }

  /**
   * Loads narinfos by file name ("<hashpart>.narinfo"); onProgress(done, total). From nar-tool
   * serve, pages of narinfo texts first (a few requests instead of one per narinfo); whatever
   * they miss, and any other cache, one fetch per narinfo with bounded concurrency.
   */
  async loadNarinfos(names, onProgress) {
    let fresh = names.filter((n) => !this.byHash.has(n.slice(0, -'.narinfo'.length)));
    const total = fresh.length;
    let done = 0;
    if (this.source.narinfoTexts && fresh.length > 50) {
      // Pages of the listing, fetched three at a time; a page the server cut short (it bounds
      // the bytes of one) leaves the rest of its range to another request.
      const wanted = new Set(fresh);
      const ranges = [];
      for (let o = 0; o < names.length; o += TEXTS_PAGE) ranges.push([o, Math.min(names.length, o + TEXTS_PAGE)]);
      let supported = true;
      const next = async () => {
        while (supported && ranges.length) {
          const [start, end] = ranges.shift();
          const page = await this.source.narinfoTexts(start, end - start);
          if (!page) {
            supported = false;
            return;
          }
          for (const [name, text] of page.items) {
            if (text == null || !wanted.delete(name)) continue;
            this.add(this.entryFromText(name, text));
            done++;
          }
          if (Number.isSafeInteger(page.next) && page.next > start && page.next < end) ranges.push([page.next, end]);
          onProgress?.(done, total);
        }
      };
      await Promise.all([next(), next(), next()]);
      fresh = [...wanted];
    }
    const limit = this.source.kind === 'http' ? 12 : 24;
    await pool(fresh, limit, async (name) => this.add(await this.fetchEntry(name)), () => onProgress?.(++done, total));
  }

  entryFromText(file, text) {
    const entry = { file, hash: file.slice(0, -'.narinfo'.length), text, info: null, error: null, absent: false };
    try {
      entry.info = this.wasm.parseNarInfo(text);
    } catch (e) {
      entry.error = errorMessage(e);
    }
    this.derive(entry);
    return entry;
  }

  /**
   * Loads the closures of `roots` (store paths, base names or hash parts), following references
   * level by level: what the graph reaches and has no narinfo for is fetched next. Returns the
   * hash parts of the roots. onProgress(done, known).
   */
  async addRoots(roots, onProgress) {
    const rootHashes = roots.map((r) => this.wasm.narinfoName(r).slice(0, 32));
    const unloaded = (hashes) => [...new Set(hashes)].filter((h) => !this.byHash.has(h));
    const limit = this.source.kind === 'http' ? 12 : 24;
    let done = 0;
    for (let level = unloaded(rootHashes); ; ) {
      const known = done + level.length;
      await pool(level, limit, async (hash) => this.add(await this.fetchEntry(`${hash}.narinfo`)), () => onProgress?.(++done, known));
      const rootPaths = rootHashes.map((h) => this.byHash.get(h)?.storePath).filter((p) => p);
      level = unloaded(this.graph.closureWithMissing(rootPaths).missing.map((p) => baseNameOf(p).slice(0, 32)));
      if (!level.length) break;
    }
    this.narinfoNames = this.entries.filter((e) => !e.absent).map((e) => e.file).sort();
    return rootHashes;
  }

  async fetchEntry(file) {
    const entry = { file, hash: file.slice(0, -'.narinfo'.length), text: null, info: null, error: null, absent: false };
    try {
      const bytes = await this.source.readFile(file);
      if (!bytes) {
        entry.absent = true;
        entry.error = `${file} is not in the cache`;
      } else {
        return this.entryFromText(file, decoder.decode(bytes));
      }
    } catch (e) {
      entry.error = errorMessage(e);
    }
    this.derive(entry);
    return entry;
  }

  /** The columns of the paths table, computed once. */
  derive(e) {
    const info = e.info;
    e.storePath = info?.storePath ?? null;
    e.baseName = e.storePath ? e.storePath.slice(e.storePath.lastIndexOf('/') + 1) : e.file;
    e.name = e.baseName.length > 33 ? e.baseName.slice(33) : e.baseName;
    e.version = '';
    if (e.storePath) {
      try {
        const p = this.wasm.parseStorePath(e.storePath, this.storeDir);
        e.version = p.version || '';
        e.name = p.name;
        e.hashMismatch = p.hashPart !== e.hash;
      } catch (err) {
        e.pathError = errorMessage(err);
      }
    }
    // The package name without its version, as the table shows it beside the version.
    e.pname = e.version && e.name.endsWith('-' + e.version) ? e.name.slice(0, -e.version.length - 1) : e.name;
    e.narSize = info?.narSize ?? null;
    e.fileSize = info?.fileSize ?? null;
    e.compression = info?.compression ?? '';
    e.sigCount = info?.sigs?.length ?? 0;
    e.refCount = info?.references?.length ?? 0;
    e.search = `${e.baseName}\n${e.hash}`.toLowerCase();
    e.sigStatus = null;
  }

  add(entry) {
    if (this.byHash.has(entry.hash)) return;
    this.byHash.set(entry.hash, entry);
    this.entries.push(entry);
    if (entry.info) this._graphPending.push(entry.info);
  }

  /** The wasm CacheGraph of every narinfo loaded. */
  get graph() {
    this._graph ??= new this.wasm.CacheGraph();
    if (this._graphPending.length) {
      this._graph.add(this._graphPending);
      this._graphPending = [];
    }
    return this._graph;
  }

  entryOfBaseName(base) {
    const hash = base.slice(0, 32);
    return this.byHash.get(hash) ?? (this.index ? this.lightEntry(hash) : null);
  }

  // ---- index mode

  /** The first shard, for a first page; then loadIndex() takes the rest. */
  async openIndex() {
    await this.index.load([0]);
  }

  /** Loads every shard of the index; onProgress(loaded, count). */
  async loadIndex(onProgress) {
    await this.index.loadAll({ onProgress });
  }

  /** Every narinfo's name known: listed, loaded, or (index mode, once read whole) the index's. */
  knownNarinfos() {
    if (this.index) return this.index.complete ? this.index.narinfoNamesLoaded() : [];
    return this.listed ? this.narinfoNames : this.entries.filter((e) => !e.absent).map((e) => e.file);
  }

  /**
   * Index mode, before the index is read whole: the server's search of it (nar-tool serve), as
   * entries: `{ total, entries }`, or null when the server cannot answer. Its records are checked
   * by the core (each store path parsed) like anything else the cache sends.
   */
  async searchServer(query, limit = 1000) {
    if (!this.source.searchIndex) return null;
    const page = await this.source.searchIndex(query, limit);
    if (!page) return null;
    const entries = [];
    for (const r of page.items) {
      let p;
      try {
        p = this.wasm.parseStorePath(String(r.storePath), this.storeDir);
      } catch {
        continue;
      }
      const num = (x) => (Number.isSafeInteger(x) && x >= 0 ? x : null);
      entries.push(this.entryOfRow({
        hashPart: p.hashPart, baseName: p.baseName, storePath: p.path, pname: p.name, version: p.version,
        present: r.present === true, narSize: num(r.narSize), fileSize: num(r.fileSize),
        refCount: Array.isArray(r.references) ? r.references.length : 0,
      }));
    }
    return { total: page.total, entries };
  }

  /** An index row as an entry of the table (no narinfo: `light`). */
  entryOfRow(row) {
    const full = this.byHash.get(row.hashPart);
    if (full) return full;
    let e = this._light.get(row.hashPart);
    if (!e) {
      e = {
        file: `${row.hashPart}.narinfo`, hash: row.hashPart, text: null, info: null, error: null, absent: !row.present,
        light: row.present, storePath: row.storePath, baseName: row.baseName, name: row.pname, pname: row.pname,
        version: row.version, narSize: row.narSize, fileSize: row.fileSize, compression: '', sigCount: 0,
        refCount: row.refCount, sigStatus: null,
      };
      if (!row.present) e.error = `${e.file} is not in the cache`;
      this._light.set(row.hashPart, e);
    }
    return e;
  }

  /** The entry of a hash part from the index when its shard is loaded, else null. */
  lightEntry(hash) {
    const row = this.index.lookupLoaded(hash);
    return row ? this.entryOfRow(row) : null;
  }

  /**
   * Index mode: what a path's view needs: its narinfo, and its closure's graph (from the index).
   * Referrers come later (they need every shard): referrersLoaded(e) says when.
   */
  async loadPath(hash) {
    if (!this.byHash.has(hash)) {
      const row = await this.index.lookup(hash);
      if (!row || !row.present) return;
      const e = await this.fetchEntry(`${hash}.narinfo`);
      if (!e.info) {
        // Missing or unreadable though the index lists it: shown with what the index says.
        Object.assign(e, { indexRow: row, storePath: row.storePath, baseName: row.baseName, narSize: row.narSize, fileSize: row.fileSize, light: true });
      }
      this.add(e);
    }
    const e = this.byHash.get(hash);
    if (e.storePath && !this._closureGraphs.has(hash)) this._closureGraphs.set(hash, await this.index.closureGraph(e.storePath));
  }

  /** Index mode: the referrers of `e` once every shard is loaded. */
  async loadReferrers(e) {
    if (!this._referrers.has(e.hash)) this._referrers.set(e.hash, await this.index.referrers(e.storePath));
  }

  /** The graph that answers for `e`: its closure's from the index, or that of every narinfo loaded. */
  graphOf(e) {
    return this.index ? this._closureGraphs.get(e.hash) : this.graph;
  }

  /** The references of a path with a narinfo or an index row (store paths). */
  referencesOf(e) {
    return e.info ? e.info.references : this.index.referencesLoaded(e.storePath);
  }

  /** `{ count, narSize, fileSize }` of the paths known. */
  totals() {
    return this.index ? this.index.totals() : sumSizes(this.entries);
  }

  entryOfStorePath(path) {
    return this.entryOfBaseName(path.slice(path.lastIndexOf('/') + 1));
  }

  /** The entries whose narinfos reference `e` (itself excluded); null while not known yet (index mode). */
  referrers(e) {
    const paths = this.index ? this._referrers.get(e.hash) : this.graph.referrers(e.storePath);
    if (!paths) return null;
    return paths.filter((p) => p !== e.storePath).map((p) => this.entryOfStorePath(p)).filter((x) => x);
  }

  /** The closure of `e`, with its sizes and the references missing from the cache (base names). */
  closure(e) {
    const { paths, missing, narSize, fileSize } = this.graphOf(e).closureWithMissing([e.storePath]);
    return { paths, narSize, fileSize, missing: missing.map(baseNameOf) };
  }

  /**
   * The closure of `e` as the core's closureTree gives it (root first; what each path adds and
   * its dominator), kept until another is asked for or the cache grows.
   */
  closureTree(e) {
    const key = `${e.hash} ${this.entries.length}`;
    if (this._tree?.key !== key) this._tree = { key, nodes: this.graphOf(e).closureTree(e.storePath) };
    return this._tree.nodes;
  }

  /** Each of `paths`' own closure size (`{ narSize, fileSize }`), by the core; `paths` are in `root`'s closure. */
  closureSizes(root, paths) {
    return this.graphOf(root).closureSizes(paths);
  }

  /** Why `e` depends on `dep` (a store path): the shortest chain of store paths, or null. */
  whyDepends(e, dep) {
    return this.graphOf(e).whyDepends(e.storePath, dep);
  }
}

function baseNameOf(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}
