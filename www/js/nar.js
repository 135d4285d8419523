// Inside one path's NAR: its listing (the cache's `.ls` file when there is one, else from the NAR
// itself), and the bytes of any file. NARs up to FULL_LIMIT are fetched, decompressed and kept
// (the wasm layer lists them and reads files out of them); larger ones are streamed through the
// wasm NarVerifier for the listing and through a Decompressor up to a file's bytes when read.

import { concat } from './util.js';

export const FULL_LIMIT = 64 * 1024 * 1024;

export class NarAccess {
  constructor(wasm, cache, entry) {
    this.wasm = wasm;
    this.cache = cache;
    this.entry = entry;
    this.info = entry.info;
    this.compression = entry.info.compression || 'bzip2';
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
      file.cancel?.();
      freeQuietly(v);
    }
  }

  async open() {
    const file = await this.cache.source.openFile(this.info.url);
    if (!file) throw new Error(`the NAR ${this.info.url} is not in the cache`);
    return file;
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
    let finished = false;
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
      finished = true;
      const out = dec.finish();
      if (out.length) {
        parts.push(out);
        total += out.length;
      }
    } finally {
      file.cancel?.();
      if (!finished) freeQuietly(dec);
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
    if (this.compression === 'none') {
      const bytes = await this.cache.source.readRange(this.info.url, start, end);
      if (!bytes) throw new Error(`the NAR ${this.info.url} is not in the cache`);
      return bytes;
    }
    return this.streamSlice(start, end);
  }

  /** Decompresses the NAR from its start up to `end`, keeping bytes [start, end). */
  async streamSlice(start, end) {
    const file = await this.open();
    const dec = new this.wasm.Decompressor(this.compression);
    const out = new Uint8Array(end - start);
    let pos = 0;
    let finished = false;
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
          finished = true;
          take(dec.finish());
          break;
        }
        take(dec.update(chunk));
      }
    } finally {
      file.cancel?.();
      if (!finished) freeQuietly(dec);
    }
    if (pos < end) throw new Error('the NAR ends before the file does');
    return out;
  }
}

function freeQuietly(obj) {
  try {
    obj.free();
  } catch {
    /* already consumed */
  }
}

function normalize(abs) {
  const out = [];
  for (const c of abs.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return '/' + out.join('/');
}

/**
 * Resolves path components in a listing, following symlinks that stay inside this store path
 * (at most 40). Returns { node, parts } (parts: the canonical components), or { outside } with
 * the absolute path a link leads to outside the NAR, or { error }.
 */
export function resolve(listing, storePath, parts, { followLast = true } = {}) {
  const root = listing.root;
  let stack = [];
  let nodes = [root];
  let todo = parts.filter((c) => c !== '');
  let hops = 0;
  const storeDir = storePath.slice(0, storePath.lastIndexOf('/'));
  const jump = (target) => {
    if (++hops > 40) return { error: 'too many levels of symbolic links' };
    let comps;
    if (target.startsWith('/')) {
      if (target !== storePath && !target.startsWith(storePath + '/')) {
        return { outside: normalize([target, ...todo].join('/')) };
      }
      comps = target.slice(storePath.length).split('/');
      stack = [];
      nodes = [root];
    } else {
      comps = target.split('/'); // relative to the link's directory, where we are
    }
    todo = [...comps.filter((c) => c !== ''), ...todo];
    return null;
  };
  if (root.type === 'symlink' && (todo.length || followLast)) {
    // A store path that is a symlink: its target is relative to the store directory.
    const abs = normalize(root.target.startsWith('/') ? root.target : `${storeDir}/${root.target}`);
    return { outside: normalize(todo.length ? `${abs}/${todo.join('/')}` : abs) };
  }
  while (todo.length) {
    const c = todo.shift();
    if (c === '.') continue;
    if (c === '..') {
      if (!stack.length) return { outside: normalize(`${storeDir}/${todo.join('/')}`) };
      stack.pop();
      nodes.pop();
      continue;
    }
    const cur = nodes[nodes.length - 1];
    if (cur.type !== 'directory') return { error: `/${stack.join('/')} is not a directory` };
    const child = Object.hasOwn(cur.entries, c) ? cur.entries[c] : undefined;
    if (!child) return { error: `no such file: /${[...stack, c].join('/')}` };
    if (child.type === 'symlink' && (todo.length || followLast)) {
      const r = jump(child.target);
      if (r) return r;
      continue;
    }
    stack.push(c);
    nodes.push(child);
  }
  return { node: nodes[nodes.length - 1], parts: stack };
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
