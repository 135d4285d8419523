// A RawSource over HTTP (fetch): a binary cache served at a base URL.
//
// HTTP binary caches have no listing, so the narinfos to check come from, in this order:
//   1. `narinfos`: an explicit list (narinfo file names, hash parts, store paths or base names);
//   2. `roots`: store paths (or hash parts) whose closure is followed through the narinfos'
//      References, fetching each narinfo once;
//   3. the listing `nar-tool serve` publishes at `<base>/_nar-tool/narinfos` (pages of narinfo
//      names, followed to the end); without it, listNarinfos() fails with an explanation.
// The NAR files are listed (for the orphan check) only from `<base>/_nar-tool/nar-files`; without
// it the orphan check is skipped.

import { CacheGraph, parseNarInfo } from './api.js';
import { checkOptions } from './options.js';

/** At most this much of a small file (nix-cache-info, a narinfo) is read. */
export const SMALL_FILE_CAP = 16 * 1024 * 1024;

const HASH_PART = /^[0-9a-df-np-sv-z]{32}$/;

/** Whether `x` looks like a RawSource already. */
export function isSource(x) {
  return (
    x !== null &&
    typeof x === 'object' &&
    !(x instanceof URL) &&
    typeof x.readFile === 'function' &&
    typeof x.openFile === 'function' &&
    typeof x.listNarinfos === 'function'
  );
}

/** `<hashpart>.narinfo` for a narinfo name, hash part, base name or store path. */
export function narinfoName(item) {
  let s = String(item).trim();
  if (s.endsWith('.narinfo')) s = s.slice(0, -'.narinfo'.length);
  const slash = s.lastIndexOf('/');
  if (slash >= 0) {
    // /nix/store/<hash>-<name>[/sub/path]: the component after the store directory.
    const parts = s.split('/').filter(Boolean);
    const found = parts.find((p) => HASH_PART.test(p.slice(0, 32)) && (p.length === 32 || p[32] === '-'));
    if (!found) throw new Error(`${JSON.stringify(item)} names no store path`);
    s = found;
  }
  const hashPart = s.slice(0, 32);
  if (!HASH_PART.test(hashPart) || (s.length > 32 && s[32] !== '-')) {
    throw new Error(`${JSON.stringify(item)} is not a narinfo name, hash part or store path`);
  }
  return `${hashPart}.narinfo`;
}

function httpError(res, url) {
  const status = `${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  return new Error(`HTTP ${status} for ${url}`);
}

/** Node's error codes for a request that got no response, in words. */
const NETWORK = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'the host name does not resolve (DNS)',
  EAI_AGAIN: 'the host name could not be resolved now (DNS)',
  EAI_NONAME: 'the host name does not resolve (DNS)',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'the connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no response in time',
  UND_ERR_SOCKET: 'the connection closed before a response',
  EHOSTUNREACH: 'no route to the host',
  ENETUNREACH: 'the network is unreachable',
  EPIPE: 'the connection closed',
};

/** Whether a Node error code is TLS's (a certificate, a handshake). */
function isTls(code) {
  return /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|EPROTO$)/.test(code);
}

/**
 * Why a fetch got no response, in words. Node tells (the cause's code); a browser says only
 * "Failed to fetch", so a second, no-cors request tells a server that answered (then the browser
 * hid the answer: CORS) from one that did not.
 */
async function whyUnreachable(e, url, doFetch) {
  const cause = e?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : null;
  // OpenSSL's own messages run over several lines: the first says it.
  const said = (m) => String(m ?? '').split('\n')[0].trim();
  if (code) {
    if (/^ERR_SSL_/.test(code)) return `TLS: the handshake failed (${code})`;
    if (isTls(code)) return `TLS: ${said(cause.message) || 'the certificate was refused'} (${code})`;
    return `${NETWORK[code] ?? (said(cause.message) || code)} (${code})`;
  }
  if (cause?.message) return said(cause.message);
  if (globalThis.location !== undefined && e instanceof TypeError) {
    try {
      await doFetch(url, { mode: 'no-cors', cache: 'no-store' });
      return 'the server answered, but does not let this page read the answer (CORS: it must send Access-Control-Allow-Origin)';
    } catch {
      return 'no answer: the server is down or unreachable, its name does not resolve, or TLS failed (the browser does not say which)';
    }
  }
  return e?.message ?? String(e);
}

/** A fetch that failed before any response: `<url>: <why>`, marked as such (`unreachable`). */
async function networkError(e, url, doFetch) {
  const why = await whyUnreachable(e, url, doFetch);
  const err = new Error(`${url}: ${why}`);
  err.unreachable = why;
  return err;
}

function absent(res) {
  return res.status === 404 || res.status === 410;
}

/** Reads at most `cap` + 1 bytes of a response body. */
async function readCapped(res, cap) {
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const parts = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      total += value.length;
      if (total > cap) break;
    }
  } finally {
    if (total > cap) await reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
  const out = new Uint8Array(Math.min(total, cap + 1));
  let at = 0;
  for (const p of parts) {
    const n = Math.min(p.length, out.length - at);
    out.set(p.subarray(0, n), at);
    at += n;
    if (at === out.length) break;
  }
  return out;
}

/**
 * A RawSource over `baseUrl` (the cache root; a trailing slash is added).
 * Options: `fetch` (default globalThis.fetch), `headers` (sent with every request, e.g.
 * authorization), `narinfos`, `roots` (see above).
 */
export function httpSource(baseUrl, options = {}) {
  checkOptions('httpSource', options, ['fetch', 'headers', 'narinfos', 'roots']);
  options ??= {};
  const base = new URL(String(baseUrl));
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const doFetch = options.fetch ?? globalThis.fetch;
  if (typeof doFetch !== 'function') throw new Error('nar-tool: httpSource needs fetch (Node >= 18 or a browser), or options.fetch');
  const headers = options.headers ?? {};
  /** narinfo texts fetched while discovering the closure, handed out once by readFile. */
  const prefetched = new Map();

  const urlOf = (path) => new URL(path.split('/').map(encodeURIComponent).join('/'), base).href;
  const get = async (path, init = {}) => {
    const url = urlOf(path);
    try {
      return await doFetch(url, { ...init, headers: { ...headers, ...(init.headers ?? {}) } });
    } catch (e) {
      throw await networkError(e, url, doFetch);
    }
  };

  /**
   * Checks the cache can be reached at all (its nix-cache-info, kept for the next readFile), so
   * that a cache that cannot is one error saying why, not a problem per file. Throws only when
   * no response came; an HTTP error status is the verifier's to report.
   */
  async function reach() {
    let bytes;
    try {
      bytes = await readFile('nix-cache-info');
    } catch (e) {
      if (!e.unreachable) return;
      const err = new Error(`cannot reach ${base.href}: ${e.unreachable}`);
      err.unreachable = e.unreachable;
      throw err;
    }
    prefetched.set('nix-cache-info', bytes);
  }

  async function readFile(path) {
    if (prefetched.has(path)) {
      const bytes = prefetched.get(path);
      prefetched.delete(path);
      return bytes;
    }
    const res = await get(path);
    if (absent(res)) return null;
    if (!res.ok) throw httpError(res, urlOf(path));
    return readCapped(res, SMALL_FILE_CAP);
  }

  async function openFile(path) {
    const res = await get(path);
    if (absent(res)) return null;
    if (!res.ok) throw httpError(res, urlOf(path));
    if (!res.body) {
      let body = new Uint8Array(await res.arrayBuffer());
      return {
        async next() {
          const b = body;
          body = null;
          return b;
        },
        async close() {},
      };
    }
    const reader = res.body.getReader();
    let finished = false;
    return {
      async next() {
        if (finished) return null;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            finished = true;
            return null;
          }
          if (value.length > 0) return value;
        }
      },
      async close() {
        if (!finished) {
          finished = true;
          await reader.cancel().catch(() => {});
        }
      },
    };
  }

  async function fileSize(path) {
    let res = await get(path, { method: 'HEAD' });
    if (absent(res)) return null;
    if (res.ok) {
      const len = res.headers.get('content-length');
      const encoded = res.headers.get('content-encoding');
      if (len !== null && /^\d+$/.test(len) && (!encoded || encoded === 'identity')) return Number(len);
    }
    // No usable HEAD: ask for the first byte and read the total from Content-Range.
    res = await get(path, { headers: { range: 'bytes=0-0' } });
    if (absent(res)) return null;
    if (res.status === 206) {
      await res.body?.cancel().catch(() => {});
      const m = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
      if (m) return Number(m[1]);
    } else if (!res.ok) {
      throw httpError(res, urlOf(path));
    }
    // Count the bytes (the server ignored the range, or gave no total).
    let total = 0;
    if (res.status === 206) res = await get(path);
    if (!res.ok) throw httpError(res, urlOf(path));
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
    }
    return total;
  }

  /** Bytes [start, end) of a file, by a Range request (a server ignoring it still works); null: absent. */
  async function readRange(path, start, end) {
    if (end <= start) return new Uint8Array(0);
    const res = await get(path, { headers: { range: `bytes=${start}-${end - 1}` } });
    if (absent(res)) return null;
    if (!res.ok) throw httpError(res, urlOf(path));
    const bytes = new Uint8Array(await res.arrayBuffer());
    return res.status === 206 ? bytes : bytes.slice(start, end);
  }

  /** `nar-tool serve`'s listing `what`, page after page (null when the server has none). */
  async function serveListing(what) {
    const names = [];
    for (let offset = 0; ; ) {
      const url = `${urlOf(`_nar-tool/${what}`)}?offset=${offset}`;
      const res = await doFetch(url, { headers });
      if (!res.ok) return null;
      let page;
      try {
        page = JSON.parse(new TextDecoder().decode(await readCapped(res, SMALL_FILE_CAP)));
      } catch {
        return null;
      }
      const strings = (a) => Array.isArray(a) && a.every((n) => typeof n === 'string');
      // An older serve: the whole listing at once.
      if (strings(page)) return page;
      if (!page || !strings(page.items)) return null;
      names.push(...page.items);
      if (page.next == null) return names;
      // A page must move on (a server saying otherwise would loop forever).
      if (!Number.isSafeInteger(page.next) || page.next <= offset) return null;
      offset = page.next;
    }
  }

  /** The narinfo names in the closure of `roots` that the cache has (absent ones are the
   *  missing references of their referrers), level by level: what the narinfos fetched so far
   *  reference and do not have (the wasm CacheGraph's missing paths) is fetched next. Each is
   *  fetched once and kept for readFile. A narinfo that cannot be parsed is listed (verify
   *  reports it), its references not followed. */
  async function closureOf(roots) {
    const rootNames = new Set(roots.map(narinfoName));
    const rootPaths = [];
    const tried = new Set();
    const names = [];
    const graph = new CacheGraph();
    try {
      for (let level = [...rootNames]; level.length > 0; ) {
        for (const n of level) tried.add(n);
        for (let at = 0; at < level.length; at += 16) {
          const batch = level.slice(at, at + 16);
          const results = await Promise.all(
            batch.map((n) =>
              readFile(n).then(
                (bytes) => [n, bytes],
                () => [n, undefined], // unreadable now: verify reads it again and reports it
              ),
            ),
          );
          for (const [n, bytes] of results) {
            if (bytes === null) {
              if (rootNames.has(n)) throw new Error(`the cache has no ${n} (a root)`);
              continue;
            }
            names.push(n);
            if (bytes === undefined) continue;
            prefetched.set(n, bytes);
            let info;
            try {
              info = parseNarInfo(new TextDecoder().decode(bytes));
            } catch {
              continue; // malformed: verify reports the narinfo
            }
            graph.add([info]);
            if (rootNames.has(n)) rootPaths.push(info.storePath);
          }
        }
        level = graph
          .closureWithMissing(rootPaths)
          .missing.map(narinfoName)
          .filter((n) => !tried.has(n));
      }
    } finally {
      graph.free();
    }
    return names;
  }

  async function listNarinfos() {
    if (options.narinfos) return [...new Set(options.narinfos.map(narinfoName))];
    if (options.roots) return closureOf(options.roots);
    const listed = await serveListing('narinfos');
    if (listed) return listed;
    throw new Error(
      `${base.href} publishes no list of its narinfos (HTTP binary caches have none; ` +
        '`nar-tool serve` has one): give the narinfos or the roots of a closure to check',
    );
  }

  async function listNarFiles() {
    if (options.narinfos || options.roots) return [];
    return (await serveListing('nar-files')) ?? [];
  }

  return { readFile, openFile, fileSize, readRange, listNarinfos, listNarFiles, reach, url: base.href };
}
