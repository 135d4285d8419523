// Where a cache's files come from: an HTTP binary cache (fetch) or a local folder (File objects
// from a directory picker or a drop; nothing is uploaded). The same code runs in the page and in
// the verify worker, so it touches no DOM. Every method is a plain closure (no `this`), which is
// what the wasm layer's RawSource wants.

/** An HTTP binary cache at `base` (a URL; a trailing slash is added). */
export function httpSource(base, { noStore = false } = {}) {
  const root = base.endsWith('/') ? base : base + '/';
  const init = noStore ? { cache: 'no-store' } : {};
  const url = (path) => new URL(path, root).href;
  const absent = (r) => r.status === 404 || r.status === 410;
  const fail = (path, r) => new Error(`${path}: HTTP ${r.status} ${r.statusText}`.trim());
  const src = {
    kind: 'http',
    base: root,
    label: root,
    url,
    async readFile(path) {
      const r = await fetch(url(path), init);
      if (absent(r)) return null;
      if (!r.ok) throw fail(path, r);
      return new Uint8Array(await r.arrayBuffer());
    },
    async openFile(path) {
      const r = await fetch(url(path), init);
      if (absent(r)) return null;
      if (!r.ok) throw fail(path, r);
      return streamOf(r.body);
    },
    async fileSize(path) {
      const r = await fetch(url(path), { ...init, method: 'HEAD' });
      if (absent(r)) return null;
      if (!r.ok) throw fail(path, r);
      const n = r.headers.get('Content-Length');
      return n == null ? null : Number(n);
    },
    /** Bytes [start, end) of a file (a Range request; a server ignoring it still works). */
    async readRange(path, start, end) {
      if (end <= start) return new Uint8Array(0);
      const r = await fetch(url(path), { ...init, headers: { Range: `bytes=${start}-${end - 1}` } });
      if (absent(r)) return null;
      if (!r.ok) throw fail(path, r);
      const bytes = new Uint8Array(await r.arrayBuffer());
      return r.status === 206 ? bytes : bytes.slice(start, end);
    },
    /** The narinfo names, from nar-tool serve's listing; null when the cache cannot be listed. */
    async listNarinfos() {
      return listing(url('_nar-tool/narinfos'));
    },
    async listNarFiles() {
      return listing(url('_nar-tool/nar-files'));
    },
    /**
     * nar-tool serve's narinfos with their texts, a page at a time:
     * { total, items: [[name, text | null]] }, or null when the server has no such thing.
     */
    async narinfoTexts(offset, limit) {
      let r;
      try {
        r = await fetch(url(`_nar-tool/narinfo-texts?offset=${offset}&limit=${limit}`), { cache: 'no-store' });
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
  return src;
}

async function listing(u) {
  let r;
  try {
    r = await fetch(u, { cache: 'no-store' });
  } catch {
    return null;
  }
  if (!r.ok) return null;
  try {
    const names = await r.json();
    return Array.isArray(names) && names.every((n) => typeof n === 'string') ? names : null;
  } catch {
    return null;
  }
}

function streamOf(body) {
  const reader = body.getReader();
  return {
    async next() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    cancel() {
      reader.cancel().catch(() => {});
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
  return src.kind === 'http' ? { kind: 'http', base: src.base } : { kind: 'local', files: src.files, label: src.label };
}

export function fromDescription(d, opts) {
  return d.kind === 'http' ? httpSource(d.base, opts) : filesSource(d.files, d.label);
}

/**
 * The wasm layer's RawSource over a source, with the narinfo names already known. Over HTTP,
 * sizes are asked for (HEAD) only when contents are not read anyway.
 */
export function rawSource(src, narinfos, narFiles, { checkContents = true } = {}) {
  const raw = {
    readFile: (p) => src.readFile(p),
    openFile: (p) => src.openFile(p),
    listNarinfos: async () => narinfos,
  };
  if (src.kind === 'local' || !checkContents) raw.fileSize = (p) => src.fileSize(p);
  if (narFiles) raw.listNarFiles = async () => narFiles;
  return raw;
}
