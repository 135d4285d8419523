// The Node entry: the wasm is compiled and instantiated synchronously when this module is
// imported, so every function can be called at once. `init()` exists for code shared with
// browsers and resolves immediately.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initSync } from './wasm/nar_tool.js';
import { configure } from './lib/api.js';
import { directoryOf, dirSource } from './lib/dir-source.js';
import { nodeSha256 } from './lib/node-sha256.js';
import { defaultThreads, threadedShare } from './lib/verify-threads.js';

// Compiled once; the verifier's worker threads instantiate the same module.
const module = new WebAssembly.Module(readFileSync(new URL('./wasm/nar_tool_bg.wasm', import.meta.url)));
initSync({ module });

/** The cache directory `target` names (a path, a file: URL, a dirSource), else null. */
function localDirectory(target) {
  if (target instanceof URL) return target.protocol === 'file:' ? fileURLToPath(target) : null;
  if (typeof target === 'string') return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(target) ? null : target;
  return directoryOf(target);
}

configure({
  initialised: true,
  sha256: nodeSha256,
  local: (target) => dirSource(target instanceof URL ? fileURLToPath(target) : target),
  threads: {
    default: defaultThreads,
    share: (options) => threadedShare({ module, ...options }),
    root: localDirectory,
  },
});

/** Initialises the WebAssembly module. In Node this was done on import: resolves at once. */
export async function init() {}

export * from './lib/public.js';
export { dirSource };
