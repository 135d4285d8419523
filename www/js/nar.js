// Inside one path's NAR: its listing (the cache's `.ls` file when there is one, else from the NAR
// itself), and the bytes of any file. NARs up to FULL_LIMIT are fetched, decompressed and kept
// (the wasm layer lists them and reads files out of them); larger ones are streamed through the
// wasm NarVerifier for the listing and through a Decompressor up to a file's bytes when read.

import { concat, errorMessage } from './util.js';
import { streamOf } from './source.js';
import { narLocation, allowedOrigins } from './urls.js';

export const FULL_LIMIT = 64 * 1024 * 1024;

export class NarAccess {
  constructor(wasm, cache, entry) {
    this.wasm = wasm;
    this.cache = cache;
    this.entry = entry;
    this.info = entry.info;
    this.compression = entry.info.compression || 'bzip2';
    /** Where the NAR is: in the cache, elsewhere (fetched only from an allowed origin), or refused. */
    this.where = narLocation(cache.source.kind === 'http' ? cache.source.base : null, entry.info.url);
    this.listing = null;
    this.listingFrom = null;
    this.nar = null;
    this.narCheck = null; // { narHash, narSize } computed from the NAR, when it was read
    this._narPromise = null;
    this._listingPromise = null;
  }

  /** NARs up to this size are read whole (`fullLimit` on the cache: a hook for the tests). */
  get small() {
    return this.info.narSize <= (this.cache.fullLimit ?? FULL_LIMIT);
  }

  listingOnce(onProgress) {
    return (this._listingPromise ??= this.loadListing(onProgress).catch((e) => {
      this._listingPromise = null;
      throw e;
    }));
  }

  async loadListing(onProgress) {
    const ls = await this.cache.source.readFile(`${this.entry.hash}.ls`).catch(() => null);
    if (ls) {
      try {
        const doc = JSON.parse(new TextDecoder().decode(ls));
        if (doc && doc.version === 1 && doc.root && typeof doc.root.type === 'string') {
          this.listing = doc;
          this.listingFrom = `${this.entry.hash}.ls`;
          return doc;
        }
      } catch {
        /* not JSON (a compressed listing, say): read the NAR instead */
      }
    }
    if (this.small) {
      await this.narOnce(onProgress);
      this.listing = this.wasm.listNar(this.nar);
      this.listingFrom = 'the NAR';
      return this.listing;
    }
    // Large: stream the whole file through the verifier, keeping nothing but the listing.
    const file = await this.open();
    const v = new this.wasm.NarVerifier(this.compression === 'none' ? undefined : this.compression);
    let read = 0;
    try {
      for (;;) {
        const chunk = await file.next();
        if (!chunk) break;
        v.update(chunk);
        read += chunk.length;
        onProgress?.(read, this.info.fileSize ?? this.info.narSize);
      }
      const summary = v.finish();
      this.narCheck = { narHash: summary.narHash, narSize: summary.narSize };
      this.listing = summary.listing;
      this.listingFrom = 'the NAR (streamed)';
      return this.listing;
    } finally {
      file.close();
      v.free();
    }
  }

  /** The NAR file as a chunk stream: from the cache, or from an origin the user allowed. */
  async open() {
    const where = this.where;
    if (where.kind === 'inside') {
      const file = await this.cache.source.openFile(where.path);
      if (!file) throw new Error(`the NAR ${this.info.url} is not in the cache`);
      return file;
    }
    if (where.kind === 'elsewhere') {
      if (!allowedOrigins().has(where.origin)) throw new NotFetched(where);
      const r = await fetch(where.href, { credentials: 'omit', referrerPolicy: 'no-referrer', cache: 'no-store' });
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status} for ${where.href}`);
      return streamOf(r.body);
    }
    throw new Error(`its URL ${JSON.stringify(this.info.url)} is not followed: ${where.why}`);
  }

  narOnce(onProgress) {
    return (this._narPromise ??= this.loadNar(onProgress).catch((e) => {
      this._narPromise = null;
      throw e;
    }));
  }

  /** Fetches and decompresses the whole NAR (small NARs only). */
  async loadNar(onProgress) {
    const file = await this.open();
    const dec = new this.wasm.Decompressor(this.compression);
    const parts = [];
    let total = 0;
    let read = 0;
    try {
      for (;;) {
        const chunk = await file.next();
        if (!chunk) break;
        read += chunk.length;
        const out = dec.update(chunk);
        if (out.length) {
          parts.push(out);
          total += out.length;
        }
        if (total > FULL_LIMIT) throw new Error(`the NAR is larger than its NarSize (${this.info.narSize})`);
        onProgress?.(read, this.info.fileSize ?? this.info.narSize);
      }
      const out = dec.finish();
      if (out.length) {
        parts.push(out);
        total += out.length;
      }
    } finally {
      file.close();
      dec.free(); // a no-op after finish()
    }
    this.nar = concat(parts, total);
    this.narCheck = { narHash: this.wasm.hash(this.nar, 'sha256'), narSize: this.nar.length };
    return this.nar;
  }

  /**
   * The bytes of the regular file at `parts` (already resolved), at most `limit` of them from the
   * start when the NAR is large (the whole file when it is small or limit is Infinity).
   */
  async readFile(parts, node, limit = Infinity) {
    if (this.small) {
      await this.narOnce();
      return this.wasm.readNarFile(this.nar, parts.join('/'));
    }
    const start = node.narOffset;
    const end = start + Math.min(node.size, limit);
    if (typeof start !== 'number') throw new Error('the listing has no NAR offset for this file');
    if (this.compression === 'none' && this.where.kind === 'inside' && this.cache.source.readRange) {
      const bytes = await this.cache.source.readRange(this.where.path, start, end);
      if (!bytes) throw new Error(`the NAR ${this.info.url} is not in the cache`);
      return bytes;
    }
    return this.streamSlice(start, end);
  }

  /**
   * Where path components lead in the listing, symlinks followed by the core (resolveNarPath,
   * absolute ones into this store path staying inside): { node, parts } (the canonical
   * components), { outside } (the absolute path a link leads to out of this store path), or
   * { error }.
   */
  resolve(parts) {
    let r;
    try {
      r = this.wasm.resolveNarPath(this.listing, parts.join('/'), this.info.storePath);
    } catch (e) {
      return { error: errorMessage(e) };
    }
    return r.outside ? r : { node: r.node, parts: r.path ? r.path.split('/') : [] };
  }

  /** Decompresses the NAR from its start up to `end`, keeping bytes [start, end). */
  async streamSlice(start, end) {
    const file = await this.open();
    const dec = new this.wasm.Decompressor(this.compression);
    const out = new Uint8Array(end - start);
    let pos = 0;
    const take = (chunk) => {
      const s = Math.max(pos, start);
      const e = Math.min(pos + chunk.length, end);
      if (s < e) out.set(chunk.subarray(s - pos, e - pos), s - start);
      pos += chunk.length;
    };
    try {
      while (pos < end) {
        const chunk = await file.next();
        if (!chunk) {
              take(dec.finish());
          break;
        }
        take(dec.update(chunk));
      }
    } finally {
      file.close();
      dec.free(); // a no-op after finish()
    }
    if (pos < end) throw new Error('the NAR ends before the file does');
    return out;
  }
}

/** A NAR on another origin, which the user has not allowed: shown, not fetched. */
export class NotFetched extends Error {
  constructor(where) {
    super(`the NAR is on another origin (${where.href}): not fetched unless you allow ${where.origin}`);
    this.href = where.href;
    this.origin = where.origin;
  }
}

/** The node at exactly these components (no symlinks followed), or null. */
export function nodeAt(listing, parts) {
  let node = listing.root;
  for (const c of parts) {
    if (node.type !== 'directory' || !Object.hasOwn(node.entries, c)) return null;
    node = node.entries[c];
  }
  return node;
}
