// Verifies a cache off the page's thread: the package's verifyCache over a RawSource built on
// its httpSource (an HTTP cache; from nar-tool serve, narinfos a page of texts and small NARs a
// batch at a time: source.js, bundle.js) or on File objects (a local folder). Cancelling
// terminates the worker.
//
// in:  { source, narinfos, narFiles, options: { trustedKeys, checkContents, only } }
// out: { type: 'progress', done, total, path, bytes } (at most every 100 ms, and the last one)
//      { type: 'report', report, exitCode } | { type: 'error', message }

import * as pkg from '../pkg/browser.js';
import { fromDescription, rawSource } from './source.js';

self.onmessage = async (ev) => {
  const { source, narinfos, narFiles, options } = ev.data;
  try {
    const src = fromDescription(pkg, source, { noStore: true });
    // Requests in flight while the wasm checks what has come: over HTTP each costs a round
    // trip, a local file next to nothing.
    const jobs = source.kind === 'http' ? 32 : 8;
    // The narinfo parser the bulk reads need (the same wasm verifyCache initialises).
    await pkg.init();
    const raw = rawSource(src, narinfos, narFiles, options, { parseNarInfo: pkg.parseNarInfo, jobs });
    let last = 0;
    let pending = null;
    const onProgress = (p) => {
      pending = { type: 'progress', done: p.done, total: p.total, path: p.path, bytes: p.bytes };
      const now = Date.now();
      if (now - last >= 100 || p.done === p.total) {
        last = now;
        self.postMessage(pending);
        pending = null;
      }
    };
    const opts = {
      trustedKeys: options.trustedKeys ?? [],
      checkContents: options.checkContents !== false,
      onProgress,
      jobs,
    };
    if (options.storeDir) opts.storeDir = options.storeDir;
    if (options.only) opts.only = options.only;
    const report = await pkg.verifyCache(raw, opts); // initialises the wasm
    if (pending) self.postMessage(pending);
    self.postMessage({ type: 'report', report: plain(report), exitCode: pkg.exitCode(report) });
  } catch (e) {
    self.postMessage({ type: 'error', message: e && e.message ? e.message : String(e) });
  }
};

/** The report as plain data (it may come back as Maps from serde-wasm-bindgen). */
function plain(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}
