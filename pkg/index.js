// The Node entry: the wasm is compiled and instantiated synchronously when this module is
// imported, so every function can be called at once. `init()` exists for code shared with
// browsers and resolves immediately.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initSync } from './wasm/nar_tool.js';
import { configure } from './lib/api.js';
import { dirSource } from './lib/dir-source.js';

initSync({ module: readFileSync(new URL('./wasm/nar_tool_bg.wasm', import.meta.url)) });
/**
 * SHA-256 by OpenSSL (the CPU's SHA instructions where it has them): several times faster than
 * the wasm's portable code, and hashing is most of what verifying costs. `update` gets a view of
 * wasm memory, which createHash consumes at once.
 */
function nodeSha256() {
  const h = createHash('sha256');
  return {
    update(bytes) {
      h.update(bytes);
    },
    digest() {
      return new Uint8Array(h.digest());
    },
  };
}

configure({
  initialised: true,
  sha256: nodeSha256,
  local: (target) => dirSource(target instanceof URL ? fileURLToPath(target) : target),
});

/** Initialises the WebAssembly module. In Node this was done on import: resolves at once. */
export async function init() {}

export * from './lib/public.js';
export { dirSource };
