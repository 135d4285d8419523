// The platform-neutral part of the package: the wasm exports (checked for initialisation, errors
// turned into JS Errors), the streaming classes, and the conveniences over them (decompress over
// streams, verifyCache over a source, a path or a URL). The entries (index.js for Node,
// browser.js for browsers) initialise the wasm and add what is platform-specific.

import * as wasm from '../wasm/nar_tool.js';
import { httpSource, isSource } from './http-source.js';
import { checkOptions } from './options.js';

let ready = false;
/** Set by the entry: initialises the wasm (idempotent), or null when it must be done by hand. */
let autoInit = null;
/** Set by the entry: turns a string/URL that is not http(s) into a source (Node: a directory). */
let localSource = null;
/** Set by the entry: the host's SHA-256 factory (Node: node:crypto), used unless told otherwise. */
let hostSha256 = null;
/** Set by the entry (Node): `{ default(), share(options), root(target) }`, to verify a local
 * cache on several threads (lib/verify-threads.js). */
let threading = null;

/** @internal Called by the entries. */
export function configure({ initialised, init, local, sha256, threads }) {
  if (initialised) ready = true;
  if (init) autoInit = init;
  if (local) localSource = local;
  if (sha256) hostSha256 = sha256;
  if (threads) threading = threads;
}

/** The SHA-256 factory to hand the wasm: the caller's, else the host's; null/false: the wasm's own. */
function sha256Option(given) {
  if (given === undefined) return hostSha256 ?? undefined;
  return given || undefined;
}

export function isInitialised() {
  return ready;
}

/** @internal */
export function checkReady() {
  if (!ready) {
    throw new Error('nar-tool: the WebAssembly module is not initialised yet: `await init()` first');
  }
}

/** Anything thrown by the wasm (or a source) as a JS Error, keeping its message. */
export function toError(e) {
  if (e instanceof Error) return e;
  if (typeof e === 'string') return new Error(e);
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    const err = new Error(e.message);
    if (e.kind !== undefined) err.kind = e.kind;
    return err;
  }
  return new Error(String(e));
}

function wrap(name) {
  return (...args) => {
    checkReady();
    const f = wasm[name];
    if (typeof f !== 'function') {
      throw new Error(`nar-tool: the wasm build has no export ${name} (rebuild it: npm run build)`);
    }
    try {
      return f(...args);
    } catch (e) {
      throw toError(e);
    }
  };
}

// ---- Formats

export const parseNarInfo = wrap('parseNarInfo');
export const formatNarInfo = wrap('formatNarInfo');
export const fingerprint = wrap('fingerprint');
export const verifySignatures = wrap('verifySignatures');
export const signNarInfo = wrap('signNarInfo');
export const publicKeyOf = wrap('publicKeyOf');
export const parsePublicKey = wrap('parsePublicKey');
export const escapeControls = wrap('escapeControls');
export const nixbase32Encode = wrap('nixbase32Encode');
export const nixbase32Decode = wrap('nixbase32Decode');
export const hash = wrap('hash');
export const parseStorePath = wrap('parseStorePath');
export const parseCacheInfo = wrap('parseCacheInfo');

// ---- NARs

export const listNar = wrap('listNar');
export const readNarFile = wrap('readNarFile');
export const resolveNarPath = wrap('resolveNarPath');
export const exitCode = wrap('exitCode');
const renderReportWasm = wrap('renderReport');

/** The report rendered as nar-tool renders it (`junit`: `{ paths, seconds, timestamp }`, checked). */
export function renderReport(report, cache, format, junit) {
  checkOptions('renderReport', junit, ['paths', 'seconds', 'timestamp']);
  return renderReportWasm(report, cache, format, junit);
}
export const closure = wrap('closure');

// ---- Cache listings (for dirSource)

export const listedNames = wrap('listedNames');
const decompressBytes = wrap('decompress');

/** @internal Calls a method of a wasm object, turning what it throws into an Error. */
export function call(obj, method, ...args) {
  if (!obj) throw new Error('nar-tool: this object was freed');
  try {
    return obj[method](...args);
  } catch (e) {
    throw toError(e);
  }
}

/** @internal Releases a wasm object's memory (once; a freed or consumed one is left alone). */
export function freeQuietly(obj) {
  if (obj && obj.__wbg_ptr !== 0) {
    try {
      obj.free();
    } catch {
      // Nothing more to release.
    }
  }
}

/** A wasm stream object: update() with each chunk, finish() once (which frees it), or free(). */
class WasmStream {
  #inner;
  constructor(make) {
    checkReady();
    try {
      this.#inner = make();
    } catch (e) {
      throw toError(e);
    }
  }
  /** Feeds the next bytes. */
  update(chunk) {
    return call(this.#inner, 'update', chunk);
  }
  /** Ends the stream and frees the wasm object. */
  finish() {
    const inner = this.#inner;
    this.#inner = null;
    try {
      return call(inner, 'finish');
    } finally {
      freeQuietly(inner);
    }
  }
  /** Releases the wasm memory (also done by finish()). */
  free() {
    const inner = this.#inner;
    this.#inner = null;
    freeQuietly(inner);
  }
}

/**
 * Streams a NAR (or, given a compression, a compressed NAR) in constant memory: its hash, size
 * and listing at the end (`finish()` → `{ narHash, narSize, listing, fileHash?, fileSize? }`).
 * Throws at the first malformed byte.
 */
export class NarVerifier extends WasmStream {
  /**
   * `compression`: the file's (then fileHash/fileSize are given too); `sha256`: a factory of
   * SHA-256 hashers (default in Node: node:crypto's; null: the wasm's own); `memoryLimit`: as
   * for Decompressor.
   */
  constructor(compression, sha256, memoryLimit) {
    super(() => new wasm.NarVerifier(compression ?? undefined, sha256Option(sha256), memoryLimit ?? undefined));
  }
  /** Feeds the next bytes. */
  update(chunk) {
    super.update(chunk);
  }
}

/**
 * A streaming decompressor (none, xz, zstd, bzip2): update() and finish() give output bytes.
 * `memoryLimit`: the most bytes the decoder may need (a zstd window, an xz dictionary); a stream
 * needing more is refused before anything is allocated. The default (2 GiB + 1 MiB) accepts what
 * Nix accepts: zstd up to `--long=31`, xz dictionaries up to 1.5 GiB.
 */
export class Decompressor extends WasmStream {
  constructor(compression, memoryLimit) {
    super(() => new wasm.Decompressor(compression, memoryLimit ?? undefined));
  }
}

// ---- The reference graph

/** @internal `new CacheGraph({ [WASM_GRAPH]: g })` wraps a graph the wasm made (CacheIndex's). */
export const WASM_GRAPH = Symbol('nar-tool wasm CacheGraph');

/**
 * The references among narinfos, built once (and grown with add()): closures, referrers and
 * why-depends, computed by the wasm core. Paths in: store paths or base names; out: store paths.
 * free() releases its wasm memory.
 */
export class CacheGraph {
  #inner;
  constructor(infos) {
    checkReady();
    if (infos && infos[WASM_GRAPH]) {
      this.#inner = infos[WASM_GRAPH];
      return;
    }
    try {
      this.#inner = new wasm.CacheGraph(infos ?? []);
    } catch (e) {
      throw toError(e);
    }
  }
  /** The number of store paths with a narinfo. */
  get size() {
    if (!this.#inner) throw new Error('nar-tool: this object was freed');
    return this.#inner.size;
  }
  /** Adds narinfos (a later one for a store path replaces an earlier one). */
  add(infos) {
    call(this.#inner, 'add', infos);
    return this;
  }
  /** Store paths with a narinfo in the closure of `roots`, roots included, sorted. */
  closure(roots) {
    return call(this.#inner, 'closure', roots);
  }
  /** `{ paths, missing }`: the closure, and the roots and references in it without a narinfo. */
  closureWithMissing(roots) {
    return call(this.#inner, 'closureWithMissing', roots);
  }
  /** Store paths whose narinfos reference `path` (itself too if it refers to itself), sorted. */
  referrers(path) {
    return call(this.#inner, 'referrers', path);
  }
  /** The shortest chain of references from `from` to `to` (both included), or null. */
  whyDepends(from, to) {
    return call(this.#inner, 'whyDepends', from, to);
  }
  /** Each path's own closure size: `[{ narSize, fileSize }]`, in the order of `paths`. */
  closureSizes(paths) {
    return call(this.#inner, 'closureSizes', paths);
  }
  /**
   * The closure of `root` with what each path adds (nix-tree's added size):
   * `[{ path, narSize, fileSize, added: { narSize, fileSize }, dominator }]`, root first.
   */
  closureTree(root) {
    return call(this.#inner, 'closureTree', root);
  }
  free() {
    const inner = this.#inner;
    this.#inner = null;
    freeQuietly(inner);
  }
}

// `using v = new NarVerifier()` where the runtime has explicit resource management.
if (typeof Symbol.dispose === 'symbol') {
  for (const C of [NarVerifier, Decompressor, CacheGraph]) {
    Object.defineProperty(C.prototype, Symbol.dispose, {
      value() {
        this.free();
      },
      writable: true,
      configurable: true,
    });
  }
}

function isByteArray(x) {
  return x instanceof Uint8Array;
}

/** Chunks as Uint8Arrays, whatever the stream gives (Buffers, ArrayBuffers, views). */
function asBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return new TextEncoder().encode(chunk);
  throw new TypeError(`nar-tool: a stream chunk must be bytes, got ${typeof chunk}`);
}

/** The chunks of a web ReadableStream or of any (async) iterable of byte chunks. */
async function* chunksOf(input) {
  if (typeof input.getReader === 'function') {
    const reader = input.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield asBytes(value);
      }
    } finally {
      reader.releaseLock();
    }
  } else {
    for await (const chunk of input) yield asBytes(chunk);
  }
}

/**
 * Decompresses `input` (none, xz, zstd, bzip2). Bytes in, bytes out; a stream in (a web
 * ReadableStream, or an async iterable of chunks such as a Node Readable), a web ReadableStream
 * of decompressed chunks out, decompressed as it is read (constant memory).
 */
export function decompress(input, compression) {
  if (isByteArray(input) || input instanceof ArrayBuffer) {
    return decompressBytes(asBytes(input), compression);
  }
  if (!input || (typeof input.getReader !== 'function' && typeof input[Symbol.asyncIterator] !== 'function'
    && typeof input[Symbol.iterator] !== 'function')) {
    throw new TypeError('nar-tool: decompress() takes a Uint8Array, a ReadableStream or an async iterable of chunks');
  }
  let decoder = null;
  let chunks = null;
  return new ReadableStream({
    async start() {
      if (!ready && autoInit) await autoInit();
      decoder = new Decompressor(compression);
      chunks = chunksOf(input);
    },
    async pull(controller) {
      try {
        for (;;) {
          const { done, value } = await chunks.next();
          if (done) {
            const d = decoder;
            decoder = null;
            const rest = d.finish();
            if (rest.length > 0) controller.enqueue(rest);
            controller.close();
            return;
          }
          const out = decoder.update(value);
          if (out.length > 0) {
            controller.enqueue(out);
            return;
          }
        }
      } catch (e) {
        if (decoder) decoder.free();
        decoder = null;
        await chunks.return?.();
        throw toError(e);
      }
    },
    async cancel(reason) {
      if (decoder) decoder.free();
      decoder = null;
      await chunks?.return?.(reason);
    },
  });
}

// ---- Verifying a cache

/** The source for a string or URL: http(s) → httpSource, else (Node) a directory. */
export function sourceFor(target, options = {}) {
  if (isSource(target)) return target;
  let url = null;
  if (target instanceof URL) url = target;
  else if (typeof target === 'string' && /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(target)) url = new URL(target);
  if (url && (url.protocol === 'http:' || url.protocol === 'https:')) {
    return httpSource(url, options);
  }
  if (localSource) return localSource(url ?? target, options);
  if (typeof target === 'string') {
    // In a browser, a relative string is a URL relative to the page.
    const base = globalThis.location?.href;
    if (base) return httpSource(new URL(target, base), options);
  }
  throw new TypeError(`nar-tool: cannot verify ${String(target)}: give a source object, a directory (Node) or an http(s) URL`);
}

/**
 * Verifies a cache: every hash, size, signature, reference, URL and file. `target` is a RawSource
 * (an object of async functions), a directory path (Node), or an http(s) URL. Gives the report
 * `nar-tool verify --json` prints.
 */
// VerifyOptions and HttpSourceOptions in index.d.ts (a test checks they agree).
const VERIFY_OPTIONS = ['trustedKeys', 'checkContents', 'storeDir', 'only', 'onProgress', 'sha256', 'memoryLimit', 'jobs', 'threads', 'share', 'maxProblems', 'fetch', 'headers', 'narinfos', 'roots'];

/**
 * The share of a verification between threads (Node, a cache on disk, the host's own SHA-256),
 * or null: one thread. `threads`: how many (default: the CPUs, at most 4).
 */
function verifyShare(target, threads, sha256, verifyOptions) {
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new TypeError(`nar-tool: threads: expected a whole number of threads from 1 to 64, found ${String(threads)}`);
  }
  const root = threading?.root(target);
  if (!root || sha256 !== undefined) return null;
  const count = threads ?? threading.default();
  if (count < 2) return null;
  const { trustedKeys, checkContents, storeDir, memoryLimit, jobs } = verifyOptions;
  return threading.share({
    threads: count,
    root,
    options: { trustedKeys, checkContents, storeDir, memoryLimit, jobs },
  });
}

/** The wasm's arguments for verifying `target` (a source, and the options it takes). */
async function verifyArguments(what, target, options) {
  checkOptions(what, options, VERIFY_OPTIONS);
  if (!ready && autoInit) await autoInit();
  checkReady();
  const { fetch, headers, narinfos, roots, sha256, threads, ...verifyOptions } = options ?? {};
  const source = sourceFor(target, { fetch, headers, narinfos, roots });
  // A cache that cannot be reached at all is one error saying why (an httpSource can tell).
  if (typeof source.reach === 'function') await source.reach();
  // A share the caller runs (its own helpers) is the wasm's to use; else perhaps threads of ours.
  const share = verifyOptions.share ? null : verifyShare(target, threads, sha256, verifyOptions);
  if (share) verifyOptions.share = share;
  const hasher = sha256Option(sha256);
  if (hasher) verifyOptions.sha256 = hasher;
  return [source, verifyOptions, share];
}

/** Runs the wasm's verification `f`, then stops any helper thread still running. */
async function runVerify(f, source, verifyOptions, share) {
  try {
    return await f(source, verifyOptions);
  } catch (e) {
    throw toError(e);
  } finally {
    await share?.stop();
  }
}

export async function verifyCache(target, options = {}) {
  return runVerify(wasm.verifyCache, ...(await verifyArguments('verifyCache', target, options)));
}

/**
 * A helper's part of a verification whose paths are shared (see `share` in VerifyOptions): checks
 * the paths of `names` (the leader's listing, as its share's begin() had it) that
 * `options.share.claim()` gives, and hands their checks, as text, to `options.share.send(text)`.
 * Resolves when claim() gives no more.
 */
export async function checkSharedPaths(target, options, names) {
  const [source, verifyOptions] = await verifyArguments('checkSharedPaths', target, options);
  if (!verifyOptions.share || typeof verifyOptions.share.claim !== 'function') {
    throw new TypeError('nar-tool: checkSharedPaths: options.share must have claim() and send(text)');
  }
  try {
    await wasm.checkSharedPaths(source, verifyOptions, Array.from(names, String));
  } catch (e) {
    throw toError(e);
  }
}

/**
 * A report kept in wasm memory, for reports too large to hold as objects: its verdict and
 * counts, and its renderings piece by piece (joined, what renderReport gives).
 */
class VerifyReport {
  #inner;
  constructor(inner) {
    this.#inner = inner;
  }
  #get() {
    if (!this.#inner) throw new Error('nar-tool: this object was freed');
    return this.#inner;
  }
  get ok() {
    return this.#get().ok;
  }
  get paths() {
    return this.#get().paths;
  }
  get checkedBytes() {
    return this.#get().checkedBytes;
  }
  get problemCount() {
    return this.#get().problemCount;
  }
  get omittedCount() {
    return this.#get().omittedCount;
  }
  /** The exit code nar-tool verify gives. */
  exitCode() {
    return call(this.#get(), 'exitCode');
  }
  /** The whole report, as verifyCache gives it. */
  toJSON() {
    return call(this.#get(), 'toJSON');
  }
  /** The rendering (as renderReport) in pieces of about 64 KiB: an iterable of strings. */
  *render(cache, format, junit) {
    checkOptions('render', junit, ['paths', 'seconds', 'timestamp']);
    const pieces = call(this.#get(), 'render', String(cache), format ?? undefined, junit);
    try {
      for (;;) {
        const piece = call(pieces, 'next');
        if (piece === undefined) return;
        yield piece;
      }
    } finally {
      freeQuietly(pieces);
    }
  }
  free() {
    const inner = this.#inner;
    this.#inner = null;
    freeQuietly(inner);
  }
}

if (typeof Symbol.dispose === 'symbol') {
  Object.defineProperty(VerifyReport.prototype, Symbol.dispose, {
    value() {
      this.free();
    },
    writable: true,
    configurable: true,
  });
}

/**
 * verifyCache, the report kept in wasm memory (a VerifyReport): for caches whose reports may
 * hold millions of problems, written piece by piece (nar-cache-verify does).
 */
export async function verifyCacheReport(target, options = {}) {
  const args = await verifyArguments('verifyCacheReport', target, options);
  return new VerifyReport(await runVerify(wasm.verifyCacheReport, ...args));
}

export { httpSource };
