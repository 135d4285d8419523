// Verifies a cache off the page's thread: the package's verifyCache over a RawSource built on
// its httpSource (an HTTP cache; from nar-tool serve, narinfos a page of texts and small NARs a
// batch at a time: source.js, bundle.js) or on File objects (a local folder). Cancelling
// terminates the worker. A large cache is shared between workers (verify.js): this one is then
// the leader (it judges the whole, taking the helpers' checks from their ports) or a helper
// (checkSharedPaths on its blocks, its checks sent to the leader).
//
// in:  { source, narinfos, narFiles, options: { trustedKeys, checkContents, only },
//        share?: { index, count, ports? (the leader's: one a helper) | port (a helper's) } }
//      { type: 'helper-failed', index } (the leader: that helper will send nothing more)
// out: { type: 'progress', done, total, path, bytes } (at most every 100 ms, and the last one)
//      { type: 'report', report, exitCode, sharedBatches } | { type: 'error', message }
//      | { type: 'helped' } (a helper, done)

import * as pkg from '../pkg/browser.js';
import { fromDescription, rawSource } from './source.js';
import { MAX_KEYS } from './bundle.js';

/** The paths are shared in blocks of one bulk batch: block b is worker (b mod count)'s. */
const BLOCK = MAX_KEYS;

/** Worker `index` of `count`'s blocks of `total` paths, one claim at a time. */
function blockClaims(index, count) {
  let next = index;
  let total = 0;
  return {
    setTotal(n) {
      total = n;
    },
    claim() {
      const start = next * BLOCK;
      if (start >= total) return undefined;
      next += count;
      return [start, Math.min(start + BLOCK, total)];
    },
  };
}

/** The leader's share: its blocks, and the helpers' texts from their ports. */
function leaderShare({ index, count, ports }) {
  const claims = blockClaims(index, count);
  const texts = [];
  let waiting = ports.length;
  let allDone = null;
  const ended = new Promise((resolve) => {
    allDone = resolve;
  });
  const done = () => {
    if (--waiting === 0) allDone();
  };
  const finished = new Set();
  let received = 0;
  const finish = (k) => {
    if (finished.has(k)) return;
    finished.add(k);
    done();
  };
  ports.forEach((port, k) => {
    port.onmessage = (ev) => {
      if (typeof ev.data === 'string') texts.push(ev.data);
      else if (ev.data?.done) finish(k);
    };
  });
  if (waiting === 0) allDone();
  return {
    helperFailed: (k) => finish(k),
    /** The texts of checks the helpers sent. */
    received: () => received,
    share: {
      begin(names) {
        claims.setTotal(names.length);
        for (const port of ports) port.postMessage({ names });
      },
      claim: () => claims.claim(),
      arrived: () => {
        received += texts.length;
        return texts.splice(0);
      },
      async rest() {
        await ended;
        received += texts.length;
        return texts.splice(0);
      },
    },
  };
}

let leader = null;

self.onmessage = async (ev) => {
  if (ev.data?.type === 'helper-failed') {
    leader?.helperFailed(ev.data.index);
    return;
  }
  const { source, narinfos, narFiles, options, share } = ev.data;
  try {
    const src = fromDescription(pkg, source, { noStore: true });
    // Requests in flight while the wasm checks what has come: over HTTP each costs a round
    // trip, a local file next to nothing.
    const jobs = source.kind === 'http' ? 32 : 8;
    // The narinfo parser the bulk reads need (the same wasm verifyCache initialises).
    await pkg.init();
    const part = share ? { index: share.index, count: share.count } : null;
    const raw = rawSource(src, narinfos, narFiles, options, { parseNarInfo: pkg.parseNarInfo, jobs, part });
    if (share && share.port) {
      await helpShare(raw, share, options, jobs);
      return;
    }
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
    const opts = { ...checkOptions(options, jobs), onProgress };
    if (options.only) opts.only = options.only;
    if (share) {
      leader = leaderShare(share);
      opts.share = leader.share;
    }
    const report = await pkg.verifyCache(raw, opts); // initialises the wasm
    if (pending) self.postMessage(pending);
    const sharedBatches = leader ? leader.received() : 0;
    self.postMessage({ type: 'report', report: plain(report), exitCode: pkg.exitCode(report), sharedBatches });
  } catch (e) {
    self.postMessage({ type: 'error', message: e && e.message ? e.message : String(e) });
  }
};

/** The package's options for checking paths as the page asked: the leader's and the helpers'. */
function checkOptions(options, jobs) {
  const opts = { trustedKeys: options.trustedKeys ?? [], checkContents: options.checkContents !== false, jobs };
  if (options.storeDir) opts.storeDir = options.storeDir;
  return opts;
}

/** A helper: waits for the leader's names, checks its blocks, sends their checks, says done. */
async function helpShare(raw, { index, count, port }, options, jobs) {
  const names = await new Promise((resolve) => {
    port.onmessage = (ev) => resolve(ev.data.names);
  });
  const claims = blockClaims(index, count);
  claims.setTotal(names.length);
  const opts = checkOptions(options, jobs);
  try {
    opts.share = { claim: () => claims.claim(), send: (text) => port.postMessage(text) };
    await pkg.checkSharedPaths(raw, opts, names);
  } finally {
    port.postMessage({ done: true });
    self.postMessage({ type: 'helped' });
  }
}

/** The report as plain data (it may come back as Maps from serde-wasm-bindgen). */
function plain(v) {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}
