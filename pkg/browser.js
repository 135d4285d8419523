// The browser entry (also used by bundlers): call `await init()` once before the synchronous
// functions; the async ones (verifyCache, decompress over a stream) initialise by themselves.
// init() fetches `wasm/nar_tool_bg.wasm` beside this file (bundlers follow the `new URL(…,
// import.meta.url)`), or what it is given: a URL, a Response, bytes or a WebAssembly.Module.

import initWasm from './wasm/nar_tool.js';
import { configure, isInitialised } from './lib/api.js';

let initialising = null;

export function init(input) {
  if (isInitialised()) return Promise.resolve();
  initialising ??= initWasm({ module_or_path: input ?? new URL('./wasm/nar_tool_bg.wasm', import.meta.url) }).then(
    () => configure({ initialised: true }),
    (e) => {
      initialising = null;
      throw e;
    },
  );
  return initialising;
}

configure({ init });

/** Directories are for Node: in a browser, use httpSource or a RawSource of your own. */
export function dirSource() {
  throw new Error('nar-tool: dirSource() needs Node (file system access); use httpSource() or your own source in a browser');
}

export * from './lib/public.js';
