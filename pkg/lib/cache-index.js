// A cache's lookup index (`nar-tool-index/`, written by nar-tool build-cache, gc and index):
// the wasm core's CacheIndex, fed the shards it needs through a source (httpSource, a
// directory in Node, or any object with readFile). Every question is the core's; this file only
// fetches shards, a few at a time, each once.

import * as wasm from '../wasm/nar_tool.js';
import { call, checkReady, freeQuietly, toError, CacheGraph, WASM_GRAPH, sourceFor } from './api.js';

const DIR = 'nar-tool-index/';
const MANIFEST = `${DIR}index.json`;

export class CacheIndex {
  #inner;
  #source;
  /** Shard number → the promise of its loading (kept: a shard is fetched once). */
  #loading = new Map();

  /**
   * The index of `target` (a source, an http(s) URL, or in Node a directory), or null when the
   * cache has none. Throws when the manifest cannot be read or is not valid.
   */
  static async open(target, options = {}) {
    const source = sourceFor(target, options);
    const bytes = await source.readFile(MANIFEST);
    return bytes ? new CacheIndex(bytes, source) : null;
  }

  /** An index from its manifest's bytes, reading shards through `source`. */
  constructor(manifest, source) {
    checkReady();
    try {
      this.#inner = new wasm.CacheIndex(manifest);
    } catch (e) {
      throw toError(e);
    }
    this.#source = source;
  }

  get storeDir() {
    return this.#get('storeDir');
  }
  /** Paths with a narinfo. */
  get paths() {
    return this.#get('paths');
  }
  /** Entries: the paths and the references without a narinfo. */
  get entries() {
    return this.#get('entries');
  }
  get shardCount() {
    return this.#get('shardCount');
  }
  get loadedShards() {
    return this.#get('loadedShards');
  }
  /** Whether every shard is loaded. */
  get complete() {
    return this.#get('complete');
  }
  #get(name) {
    if (!this.#inner) throw new Error('nar-tool: this object was freed');
    return this.#inner[name];
  }

  /**
   * Loads shards (numbers), `concurrency` at a time; onProgress(loadedShards, shardCount) after
   * each. A shard that is missing or not what the manifest names (a newer index replaced it)
   * throws, naming it.
   */
  async load(shards, { concurrency = 6, onProgress } = {}) {
    const queue = [...new Set(shards)];
    const worker = async () => {
      while (queue.length) {
        const n = queue.shift();
        await this.#loadOne(n);
        onProgress?.(this.loadedShards, this.shardCount);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, queue.length)) }, worker));
  }

  /** Loads every shard not loaded yet (see load). */
  loadAll(options) {
    return this.load(call(this.#inner, 'missingShards'), options);
  }

  #loadOne(n) {
    let p = this.#loading.get(n);
    if (!p) {
      p = (async () => {
        const name = call(this.#inner, 'shardName', n);
        const bytes = await this.#source.readFile(DIR + name);
        if (!bytes) throw new Error(`index shard ${name} is missing from the cache (a newer index replaced it?)`);
        call(this.#inner, 'addShard', n, bytes);
      })();
      p.catch(() => this.#loading.delete(n));
      this.#loading.set(n, p);
    }
    return p;
  }

  /** Asks `need()` for shards until it needs none. */
  async #until(need) {
    for (let round = 0; ; round++) {
      const shards = need();
      if (!shards.length) return;
      if (round > this.shardCount) throw new Error('nar-tool: the index keeps asking for shards');
      await this.load(shards);
    }
  }

  /** Loads the shard of a hash part, store path or base name; returns its hash part. */
  async #loadHash(path) {
    const hashPart = String(path).slice(String(path).lastIndexOf('/') + 1).slice(0, 32);
    const n = call(this.#inner, 'shardOfHash', hashPart);
    if (n !== undefined) await this.load([n]);
    return hashPart;
  }

  /** The entry of a hash part, store path or base name (null: not in the index). */
  async lookup(path) {
    return call(this.#inner, 'lookup', await this.#loadHash(path));
  }

  /** The entry of a hash part if its shard is loaded (null: none; undefined: not loaded yet). */
  lookupLoaded(hashPart) {
    return call(this.#inner, 'lookupLoaded', hashPart);
  }

  /** `{ count, narSize, fileSize }` of the loaded entries with a narinfo. */
  totals() {
    return call(this.#inner, 'totals');
  }

  /**
   * Selects the loaded entries with a narinfo whose base name contains `search` (any case),
   * sorted by `sortKey` ('name', 'version', 'hash', 'narSize', 'fileSize', 'refs'); returns how
   * many. rows(start, count) pages through them; viewTotals() sums them.
   */
  query(search, sortKey = 'name', descending = false) {
    return call(this.#inner, 'query', search, sortKey, descending);
  }
  rows(start, count) {
    return call(this.#inner, 'rows', start, count);
  }
  viewTotals() {
    return call(this.#inner, 'viewTotals');
  }

  /** The references of a path with an entry, as store paths (sorted). */
  async references(path) {
    await this.#loadHash(path);
    await this.#until(() => call(this.#inner, 'shardsForReferences', path));
    return call(this.#inner, 'references', path);
  }

  /** references(path) when its shards are loaded already (a closure's paths, once closureGraph gave it); throws else. */
  referencesLoaded(path) {
    return call(this.#inner, 'references', path);
  }

  /** The reference graph of a path's closure: a CacheGraph (free() it when done). */
  async closureGraph(path) {
    await this.#loadHash(path);
    await this.#until(() => call(this.#inner, 'shardsForClosure', path));
    return new CacheGraph({ [WASM_GRAPH]: call(this.#inner, 'closureGraph', path) });
  }

  /** The paths that reference `path` (loads every shard first). */
  async referrers(path, options) {
    await this.loadAll(options);
    return call(this.#inner, 'referrers', path);
  }

  /** `<hash part>.narinfo` of every path with a narinfo, sorted (loads every shard first). */
  async narinfoNames(options) {
    await this.loadAll(options);
    return this.narinfoNamesLoaded();
  }

  /** narinfoNames() once every shard is loaded (`complete`); throws else. */
  narinfoNamesLoaded() {
    return call(this.#inner, 'narinfoNames');
  }

  free() {
    const inner = this.#inner;
    this.#inner = null;
    freeQuietly(inner);
  }
}
