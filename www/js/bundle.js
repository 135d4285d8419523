// Small NAR files in bulk from nar-tool serve (`GET _nar-tool/files?key=…`, its framing in
// src/host/serve/bundle.rs): a browser pays milliseconds per request, so the verify worker asks
// for the NARs of the narinfos it is about to check a batch at a time, a few batches ahead, and
// hands each file out once. Only bytes move here: which file a narinfo names comes from the
// package's parseNarInfo, and every check is the verifier's. Anything not had this way (another
// server, a larger file, an error) is fetched by itself, as before.

/** What the body starts with. */
const MAGIC = 'nar-tool files 1';
const SENT = 0;
const ABSENT = 1;
const END = 0xff;
/** The most keys serve takes in one request. */
export const MAX_KEYS = 128;
/** Files up to this size are asked for in bulk (the rest one by one). */
export const MAX_FILE = 64 * 1024;
/** The most bytes serve sends in one response (its cap), and its framing's. */
const MAX_BODY = 8 * 1024 * 1024 + MAX_KEYS * 9 + 64;

/**
 * The records of a body: a Map from each key asked to its bytes (sent), null (absent), or
 * undefined (not sent: fetch it by itself). Throws on a body that is not that framing, or is cut
 * short.
 */
export function parseFiles(body, keys) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (body.length < MAGIC.length || new TextDecoder().decode(body.subarray(0, MAGIC.length)) !== MAGIC) {
    throw new Error('not a nar-tool files response');
  }
  const out = new Map();
  let at = MAGIC.length;
  for (let n = 0; ; n++) {
    if (at + 9 > body.length) throw new Error('the files response is cut short');
    const status = body[at];
    const len = Number(view.getBigUint64(at + 1));
    at += 9;
    if (status === END) {
      if (len !== n || n !== keys.length || at !== body.length) throw new Error('the files response does not match the request');
      return out;
    }
    if (n >= keys.length || len > body.length - at) throw new Error('the files response is cut short');
    const key = keys[n];
    if (status === SENT) out.set(key, body.subarray(at, at + len));
    else if (status === ABSENT) out.set(key, null);
    else out.set(key, undefined);
    at += len;
  }
}

/** Reads at most `cap` bytes of a response (throws past it). */
async function readAll(res, cap) {
  const buf = new Uint8Array(await res.arrayBuffer());
  if (buf.length > cap) throw new Error('the files response is too large');
  return buf;
}

/**
 * The files of `keys` from nar-tool serve at `url(…)` with `headers`, in one request: parseFiles'
 * Map, or null when the server has no such thing or the request failed.
 */
export async function fetchFiles(url, headers, keys) {
  const query = keys.map((k) => `key=${encodeURIComponent(k)}`).join('&');
  try {
    const r = await fetch(url(`_nar-tool/files?max-file=${MAX_FILE}&${query}`), { cache: 'no-store', headers });
    if (!r.ok || r.headers.get('content-type') !== 'application/octet-stream') return null;
    return parseFiles(await readAll(r, MAX_BODY), keys);
  } catch {
    return null;
  }
}

/** A file's bytes as the stream the wasm layer's openFile gives, its size known. */
function streamOfBytes(bytes) {
  let left = bytes;
  return {
    size: bytes.length,
    async next() {
      const b = left;
      left = null;
      return b && b.length > 0 ? b : null;
    },
    async close() {
      left = null;
    },
  };
}

/**
 * The NAR files of `count` narinfos (in the verifier's order) in bulk. `noteText(i, text)` gives
 * the prefetcher narinfo `i`'s text as soon as it is known (from serve's pages), `noted(from, to)`
 * says a range is complete (a batch is asked for once all its narinfos are); `reading(i)` says the
 * verifier reads narinfo `i` now (the batches from there on, `ahead` of them, are asked for;
 * those of the paths done, `jobs` behind, are dropped); `openFile(path)` gives the file if a
 * batch had it (once), else undefined. `files(keys)` is the request (fetchFiles); `parse` the
 * package's parseNarInfo. `part` (`{ index, count }`): this worker checks only the blocks of
 * `batch` paths whose number is `index` modulo `count`, so only their batches are asked for.
 */
export function narPrefetcher({ count, files, parse, jobs = 32, batch = MAX_KEYS, ahead = 4, part = null }) {
  // With the paths shared between workers, each asks only for the batches of its own blocks.
  const owned = (b) => !part || b % part.count === part.index;
  const keyOf = new Array(count);
  const known = new Uint8Array(count);
  /** Batch number → the promise of its Map (the Map's entries taken as they are handed out). */
  const batches = new Map();
  /** key → the batch that has it. */
  const whereIs = new Map();
  let dropped = 0;
  let off = false;

  const ask = (b) => {
    if (off || batches.has(b) || b * batch >= count) return;
    const from = b * batch;
    const to = Math.min(count, from + batch);
    for (let i = from; i < to; i++) if (!known[i]) return; // its texts are not all here yet
    const keys = [];
    for (let i = from; i < to; i++) {
      const k = keyOf[i];
      if (k && !whereIs.has(k)) {
        keys.push(k);
        whereIs.set(k, b);
      }
    }
    const got = keys.length === 0 ? Promise.resolve(new Map()) : files(keys).then((m) => {
      if (m === null) off = true; // not nar-tool serve, or it fails: one by one from now on
      return m ?? new Map();
    });
    batches.set(b, { keys, got });
  };

  return {
    noteText(i, text) {
      if (!(i >= 0 && i < count) || known[i]) return;
      try {
        const info = parse(text);
        const size = info.fileSize;
        if (typeof info.url === 'string' && /^nar\/[^/]+$/.test(info.url) && typeof size === 'number' && size <= MAX_FILE) keyOf[i] = info.url;
      } catch {
        // Not a narinfo: the verifier says why; nothing to fetch for it.
      }
    },
    /** The texts of narinfos [from, to) are all noted (those a page had none for, too). */
    noted(from, to) {
      known.fill(1, Math.max(0, from), Math.min(count, to));
    },
    /** Nothing more comes in bulk (serve's pages are not there). */
    stop() {
      off = true;
    },
    reading(i) {
      const b = Math.floor(i / batch);
      for (let k = 0, asked = 0; asked < ahead && (b + k) * batch < count; k++) {
        if (!owned(b + k)) continue;
        ask(b + k);
        asked++;
      }
      // Paths more than `jobs` behind are done: what their batches still hold is not wanted.
      const done = Math.floor(Math.max(0, i - jobs) / batch);
      for (; dropped < done; dropped++) {
        const old = batches.get(dropped);
        if (!old) continue;
        for (const k of old.keys) if (whereIs.get(k) === dropped) whereIs.delete(k);
        batches.delete(dropped);
      }
    },
    async openFile(path) {
      const b = whereIs.get(path);
      if (b === undefined) return undefined;
      whereIs.delete(path);
      const m = await batches.get(b)?.got;
      if (!m) return undefined;
      const bytes = m.get(path);
      m.delete(path);
      if (bytes === null) return null;
      return bytes ? streamOfBytes(bytes) : undefined;
    },
  };
}
