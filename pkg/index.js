// The Node entry: the wasm is compiled and instantiated synchronously when this module is
// imported, so every function can be called at once. `init()` exists for code shared with
// browsers and resolves immediately.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initSync } from './wasm/nar_tool.js';
import { configure } from './lib/api.js';
import { dirSource } from './lib/dir-source.js';

initSync({ module: readFileSync(new URL('./wasm/nar_tool_bg.wasm', import.meta.url)) });
configure({
  initialised: true,
  local: (target) => dirSource(target instanceof URL ? fileURLToPath(target) : target),
});

/** Initialises the WebAssembly module. In Node this was done on import: resolves at once. */
export async function init() {}

export * from './lib/public.js';
export { dirSource };
