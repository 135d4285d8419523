// A verification of a cache on disk shared between Node worker threads (Node only): each thread
// runs the same wasm verifier on the paths it claims, a few at a time, from one counter in
// shared memory; the helpers send their checks back as text and the leading thread judges the
// whole. The wasm core does the sharing (src/cache/verify/share.rs); this module only starts
// the workers and carries their messages.

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { availableParallelism } from 'node:os';

/** Paths a thread claims at a time. */
export const CLAIM_BATCH = 8;
/** Below this many paths a worker's start (~40 ms) costs more than it saves. */
export const MIN_SHARED_PATHS = 256;
/** Threads used unless told: the CPUs, at most this many. */
const MAX_DEFAULT_THREADS = 4;

/**
 * Test hooks, from NAR_TOOL_TEST_SHARE (comma-separated): `from1`: share from one path on;
 * `die`: each helper ends after its first claim, sending nothing; `log`: the leader tells on
 * stderr how many batches of checks its helpers sent.
 */
export const testHooks = new Set((process.env.NAR_TOOL_TEST_SHARE ?? '').split(',').filter(Boolean));
const sharedFrom = () => (testHooks.has('from1') ? 1 : MIN_SHARED_PATHS);

export function defaultThreads() {
  return Math.max(1, Math.min(MAX_DEFAULT_THREADS, availableParallelism()));
}

/** The next paths to check from the shared `counter` (an Int32Array): [start, end), or none. */
export function claimFrom(counter, total) {
  if (Atomics.load(counter, 0) >= total) return undefined;
  const start = Atomics.add(counter, 0, CLAIM_BATCH);
  return start < total ? [start, Math.min(start + CLAIM_BATCH, total)] : undefined;
}

/**
 * The leading thread's share object (see src/wasm/share.rs). `threads - 1` workers are started
 * at once, so that they load while the leader lists the cache; when the paths are known they get
 * the list, or are stopped if there are too few paths to share. `module`: the compiled wasm
 * (shared with the workers, not compiled again); `root`: the cache directory; `options`: the
 * plain verify options the workers use too. stop() ends any worker still running.
 */
export function threadedShare({ threads, module, root, options }) {
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const helpers = [];
  let total = 0;
  let received = 0;
  for (let k = 1; k < threads; k++) {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(new URL('./verify-worker.js', import.meta.url), {
      workerData: { module, root, options, counter: counter.buffer, port: port2 },
      transferList: [port2],
    });
    // A worker that fails (or is stopped) just ends: the paths it did not send are the leader's.
    const exited = new Promise((resolve) => {
      worker.once('error', () => {});
      worker.once('exit', resolve);
    });
    helpers.push({ worker, port: port1, exited });
  }
  const drain = (texts) => {
    for (const h of helpers) {
      for (let m = receiveMessageOnPort(h.port); m !== undefined; m = receiveMessageOnPort(h.port)) {
        if (typeof m.message === 'string') texts.push(m.message);
      }
    }
    return texts;
  };
  const stop = async () => {
    // No more claims, and no worker left running.
    Atomics.store(counter, 0, 0x7fffffff);
    const stopping = helpers.splice(0);
    await Promise.all(stopping.map((h) => h.worker.terminate()));
    for (const h of stopping) h.port.close();
  };
  return {
    begin(names) {
      total = names.length;
      if (total < sharedFrom()) {
        stop();
        return;
      }
      for (const h of helpers) h.port.postMessage(names);
    },
    claim() {
      return claimFrom(counter, total);
    },
    arrived() {
      if (helpers.length === 0) return undefined;
      const texts = drain([]);
      received += texts.length;
      return texts;
    },
    async rest() {
      await Promise.all(helpers.map((h) => h.exited));
      const texts = drain([]);
      if (testHooks.has('log')) process.stderr.write(`nar-tool: shared: ${received + texts.length} batches from ${helpers.length} helpers\n`);
      return texts;
    },
    stop,
  };
}
