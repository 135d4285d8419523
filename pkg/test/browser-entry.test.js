// The browser entry (browser.js), run in a fresh Node process as a browser would use it: nothing
// works before init(), init() takes the wasm's bytes (or fetches it), async functions initialise
// by themselves, dirSource is refused.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { CACHES, CORPUS_KEY, PKG, run } from '../tools/test-helpers.js';

async function script(body) {
  const r = await run(process.execPath, ['--input-type=module', '-e', body], { cwd: PKG });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n');
}

test('browser.js: init() with the wasm bytes, before which the synchronous functions refuse', async () => {
  const out = await script(`
    import { readFileSync } from 'node:fs';
    import * as nar from './browser.js';
    console.log(nar.isInitialised());
    try { nar.nixbase32Encode(new Uint8Array(1)); } catch (e) { console.log(e instanceof Error, e.message); }
    try { nar.dirSource('.'); } catch (e) { console.log(e.message); }
    await nar.init(readFileSync('wasm/nar_tool_bg.wasm'));
    await nar.init();
    console.log(nar.isInitialised(), nar.nixbase32Encode(new Uint8Array(20)));
  `);
  assert.deepEqual(out, [
    'false',
    'true nar-tool: the WebAssembly module is not initialised yet: `await init()` first',
    'nar-tool: dirSource() needs Node (file system access); use httpSource() or your own source in a browser',
    `true ${'0'.repeat(32)}`,
  ]);
});

test('browser.js: init() fetches the wasm beside the module; verifyCache initialises by itself', async () => {
  // Node's fetch cannot read file: URLs; a browser's fetch would get it over HTTP like this.
  const out = await script(`
    import { readFile } from 'node:fs/promises';
    const realFetch = globalThis.fetch;
    const fetched = [];
    globalThis.fetch = async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.protocol !== 'file:') return realFetch(input, init);
      fetched.push(url.pathname.split('/').slice(-2).join('/'));
      return new Response(await readFile(url), { headers: { 'content-type': 'application/wasm' } });
    };
    const nar = await import('./browser.js');
    const files = new Map();
    const dir = ${JSON.stringify(path.join(CACHES, 'zstd'))};
    const { readdirSync, readFileSync } = await import('node:fs');
    for (const f of readdirSync(dir)) if (!f.endsWith('.ls') && f.includes('.')) files.set(f, readFileSync(dir + '/' + f));
    files.set('nix-cache-info', readFileSync(dir + '/nix-cache-info'));
    for (const f of readdirSync(dir + '/nar')) files.set('nar/' + f, readFileSync(dir + '/nar/' + f));
    const source = {
      readFile: async (p) => files.get(p) ?? null,
      openFile: async (p) => { const b = files.get(p); let done = !b; return b ? { next: async () => (done ? null : ((done = true), b)) } : null; },
      listNarinfos: async () => [...files.keys()].filter((f) => f.endsWith('.narinfo')),
    };
    const report = await nar.verifyCache(source, { trustedKeys: [${JSON.stringify(CORPUS_KEY)}] });
    console.log(fetched.join(','), report.ok, report.paths, nar.exitCode(report));
  `);
  assert.deepEqual(out, ['wasm/nar_tool_bg.wasm true 9 0']);
});
