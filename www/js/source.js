// Where a cache's files come from: an HTTP binary cache (the npm package's httpSource, over
// fetch) or a local folder (File objects from a directory picker or a drop; nothing is uploaded).
// The same code runs in the page and in the verify worker, so it touches no DOM. Every method is
// a plain closure (no `this`), which is what the wasm layer's RawSource wants. `pkg` is the
// package's browser entry (pkg/browser.js), imported by the caller.

import { fetchFiles, narPrefetcher } from './bundle.js';

/**
 * An HTTP binary cache at `base` (a URL; a trailing slash is added): the package's httpSource,
 * with what the inspector adds: listNarinfos() gives null when the cache cannot be listed, and
 * nar-tool serve's pages of narinfo texts.
 */
export function httpSource(pkg, base, { noStore = false, authorization = null } = {}) {
  // Credentials when given; and to nar-tool serve (this page's origin), that a script asks, so
  // that a 401 brings the page's own login form, not the browser's prompt.
  const sameOrigin = typeof location !== 'undefined' && new URL(base, location.href).origin === location.origin;
  const headers = {
    ...(authorization ? { authorization } : {}),
    ...(authorization || sameOrigin ? { 'x-requested-with': 'nar-tool' } : {}),
  };
  const src = pkg.httpSource(base, { headers, ...(noStore ? { fetch: (u, init) => fetch(u, { ...init, cache: 'no-store' }) } : {}) });
  const root = src.url;
  const url = (path) => new URL(path, root).href;
  return {
    ...src,
    kind: 'http',
    base: root,
    authorization,
    label: root,
    url,
    /** The URL of the cache's file at `path` (relative to the root, each component escaped). */
    fileUrl: (path) => new URL(path.split('/').map(encodeURIComponent).join('/'), root).href,
    /** The narinfo names, from nar-tool serve's listing; null when the cache cannot be listed. */
    async listNarinfos() {
      try {
        return await src.listNarinfos();
      } catch {
        return null;
      }
    },
    /**
     * nar-tool serve's search of the cache's lookup index (`/_nar-tool/lookup`): the first
     * `limit` records of `query` and how many there are, `{ total, items }`; null when the
     * server cannot answer (not nar-tool serve, no index, busy).
     */
    async searchIndex(query, limit) {
      try {
        const r = await fetch(url(`_nar-tool/lookup?q=${encodeURIComponent(query)}&limit=${limit}`), { cache: 'no-store', headers });
        if (!r.ok) return null;
        const page = await r.json();
        return page && Array.isArray(page.items) && Number.isSafeInteger(page.total) ? page : null;
      } catch {
        return null;
      }
    },
    /**
     * nar-tool serve's narinfos with their texts, a page at a time:
     * { total, items: [[name, text | null]], next } (next: where the following page starts, null
     * at the end; a page may hold fewer than asked), or null when the server has no such thing.
     */
    /**
     * nar-tool serve's files of `keys` in one response (bundle.js): a Map of each key to its
     * bytes, null (absent) or undefined (fetch it by itself); null when the server has no such
     * thing.
     */
    files: (keys) => fetchFiles(url, headers, keys),
    async narinfoTexts(offset, limit) {
      let r;
      try {
        r = await fetch(url(`_nar-tool/narinfo-texts?offset=${offset}&limit=${limit}`), { cache: 'no-store', headers });
      } catch {
        return null;
      }
      if (!r.ok) return null;
      try {
        const page = await r.json();
        return page && Array.isArray(page.items) ? page : null;
      } catch {
        return null;
      }
    },
  };
}

/** A ReadableStream (a File's, a response's) as a chunk stream, as the wasm layer's openFile gives them. */
export function streamOf(body) {
  const reader = body.getReader();
  return {
    async next() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    async close() {
      await reader.cancel().catch(() => {});
    },
  };
}

/** A local folder: `files` maps paths relative to the cache root ("nar/x.nar.xz") to Files. */
export function filesSource(files, label) {
  const get = (path) => files.get(path.replace(/^\/+/, '')) ?? null;
  return {
    kind: 'local',
    files,
    label,
    url: null,
    async readFile(path) {
      const f = get(path);
      return f ? new Uint8Array(await f.arrayBuffer()) : null;
    },
    async openFile(path) {
      const f = get(path);
      return f ? streamOf(f.stream()) : null;
    },
    async fileSize(path) {
      const f = get(path);
      return f ? f.size : null;
    },
    async readRange(path, start, end) {
      const f = get(path);
      return f ? new Uint8Array(await f.slice(start, end).arrayBuffer()) : null;
    },
    async listNarinfos() {
      return [...files.keys()].filter((p) => /^[^/]+\.narinfo$/.test(p)).sort();
    },
    async listNarFiles() {
      return [...files.keys()].filter((p) => /^nar\/[^/]+$/.test(p)).sort();
    },
  };
}

/**
 * Files picked or dropped, as [relativePath, File] pairs, rooted at the shallowest folder holding
 * a `nix-cache-info` (so picking a parent of the cache works too). Throws if there is none.
 */
export function cacheFiles(pairs) {
  let root = null;
  for (const [p] of pairs) {
    if (p !== 'nix-cache-info' && !p.endsWith('/nix-cache-info')) continue;
    const dir = p.slice(0, p.length - 'nix-cache-info'.length);
    if (root === null || dir.split('/').length < root.split('/').length) root = dir;
  }
  if (root === null) throw new Error('no nix-cache-info in the chosen folder: not a binary cache');
  const files = new Map();
  for (const [p, f] of pairs) {
    if (p.startsWith(root)) files.set(p.slice(root.length), f);
  }
  const label = (root.replace(/\/$/, '').split('/').pop() || 'local folder') + '/';
  return { files, label };
}

/** What a worker needs to rebuild a source (Files are structured-cloneable). */
export function describe(src) {
  return src.kind === 'http' ? { kind: 'http', base: src.base, authorization: src.authorization } : { kind: 'local', files: src.files, label: src.label };
}

export function fromDescription(pkg, d, opts) {
  return d.kind === 'http' ? httpSource(pkg, d.base, { ...opts, authorization: d.authorization }) : filesSource(d.files, d.label);
}

/**
 * The wasm layer's RawSource over a source, with the narinfo names already known. Over HTTP,
 * sizes are asked for (HEAD) only when contents are not read anyway.
 */
export function rawSource(src, narinfos, narFiles, { checkContents = true, only = null } = {}, { parseNarInfo = null, jobs = 32, part = null } = {}) {
  // The small NARs in bulk from nar-tool serve, when the whole cache is read in order (`part`:
  // this worker's blocks of it, when workers share the paths).
  const bulk = src.files && src.narinfoTexts && parseNarInfo && checkContents && !only
    ? narPrefetcher({ count: narinfos.length, files: src.files, parse: parseNarInfo, jobs, part })
    : null;
  const narinfo = src.narinfoTexts ? pagedNarinfos(src, narinfos, bulk) : null;
  const raw = {
    readFile: (p) => (narinfo ? narinfo(p) : src.readFile(p)),
    openFile: bulk ? async (p) => {
      const had = await bulk.openFile(p);
      return had === undefined ? src.openFile(p) : had;
    } : (p) => src.openFile(p),
    listNarinfos: async () => narinfos,
  };
  if (src.kind === 'local' || !checkContents) raw.fileSize = (p) => src.fileSize(p);
  if (narFiles) raw.listNarFiles = async () => narFiles;
  return raw;
}

/** Narinfo texts per page of nar-tool serve's narinfo-texts (the most it gives). */
const TEXTS_PAGE = 1000;

/**
 * readFile for a verifier over nar-tool serve: the narinfos among `narinfos` come a page of
 * texts at a time (one request per 1 000, the next page asked for while one is read), each handed
 * out once; a name a page does not give (not UTF-8, too large, the cache changed, a server
 * without pages) and any other file are fetched by themselves, as before. `bulk` (a
 * narPrefetcher) is given each page's texts and told which narinfo is read.
 */
export function pagedNarinfos(src, narinfos, bulk = null) {
  const index = new Map(narinfos.map((n, i) => [n, i]));
  const texts = new Map();
  const pages = new Map();
  const encoder = new TextEncoder();
  let supported = true;
  const page = (start) => {
    if (start >= narinfos.length || pages.has(start)) return;
    pages.set(start, (async () => {
      const p = supported ? await src.narinfoTexts(start, TEXTS_PAGE) : null;
      if (!p) {
        supported = false;
        bulk?.stop();
        return;
      }
      for (const [name, text] of p.items) {
        if (typeof text === 'string' && index.has(name)) {
          texts.set(name, encoder.encode(text));
          bulk?.noteText(index.get(name), text);
        }
      }
      bulk?.noted(start, start + TEXTS_PAGE);
    })());
  };
  return async (path) => {
    const i = index.get(path);
    if (i !== undefined && supported) {
      const start = i - (i % TEXTS_PAGE);
      page(start);
      page(start + TEXTS_PAGE);
      await pages.get(start);
      bulk?.reading(i);
      const bytes = texts.get(path);
      if (bytes) {
        texts.delete(path);
        return bytes;
      }
    }
    return src.readFile(path);
  };
}
