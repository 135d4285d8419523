// The inspector built into the binary (feature embed-inspector): a copy of that binary, away from
// any checkout, serves the inspector, the package's browser entry and the wasm build with no
// folder given — the same bytes as the checkout's, nothing else of the folders — and the page
// works: it opens the cache and verifies it clean in headless Chromium.
// scripts/test-www.sh builds the binary and names it in NAR_TOOL_EMBEDDED_BIN.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { copyCache, removeTemporary, repo, tempDir } from './serve.mjs';
import { PUBLIC_KEY, close, launch, openPage, serve, shot } from './browser.mjs';

const built = process.env.NAR_TOOL_EMBEDDED_BIN;

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

/** The binary with the inspector built in, copied where no checkout is beside it. */
function installedCopy() {
  assert.ok(built, 'NAR_TOOL_EMBEDDED_BIN is not set: scripts/test-www.sh builds that binary '
    + '(cargo build --features embed-inspector) and sets it');
  const to = join(tempDir('nar-tool-installed-'), 'nar-tool');
  copyFileSync(built, to);
  return to;
}

/** Every file the server serves of its own: URL under /_nar-tool/ → the checkout's file. */
function ownFiles() {
  const js = (dir) => readdirSync(join(repo, dir)).filter((n) => /^[\w.-]+\.js$/.test(n) && !n.startsWith('.'));
  return [
    ['', 'www/index.html'],
    ['style.css', 'www/style.css'],
    ...js('www/js').map((n) => [`js/${n}`, `www/js/${n}`]),
    ['pkg/browser.js', 'pkg/browser.js'],
    ...js('pkg/lib').map((n) => [`pkg/lib/${n}`, `pkg/lib/${n}`]),
    ['pkg/wasm/nar_tool.js', 'pkg/wasm/nar_tool.js'],
    ['pkg/wasm/nar_tool_bg.wasm', 'pkg/wasm/nar_tool_bg.wasm'],
  ];
}

test('an installed binary serves its own inspector, byte for byte, and nothing else', async () => {
  const s = await serve(copyCache('xz'), { bin: installedCopy(), folders: false, quiet: false });
  assert.match(s.log, /the inspector: http:\/\/\S+\/_nar-tool\//);
  const files = ownFiles();
  assert.ok(files.length > 10, 'the checkout has the inspector');
  for (const [url, file] of files) {
    const r = await fetch(`${s.url}${url}`);
    assert.equal(r.status, 200, url);
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(body.equals(readFileSync(join(repo, file))), `${url} is ${file}`);
    const type = r.headers.get('content-type');
    assert.match(type, url.endsWith('.wasm') ? /^application\/wasm/ : /^text\/(html|css|javascript)/, url);
    const etag = r.headers.get('etag');
    assert.ok(etag, `${url} has an ETag`);
    const again = await fetch(`${s.url}${url}`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, `${url} revalidates`);
  }
  for (const url of ['package.json', 'test/e2e.test.mjs', 'pkg/package.json', 'pkg/index.js',
    'pkg/wasm/nar_tool.d.ts', 'js/../index.html.bak', 'pkg/lib/missing.js']) {
    const r = await fetch(`${s.url}${url}`);
    assert.equal(r.status, 404, url);
    await r.arrayBuffer();
  }
  // `/` leads to the inspector.
  const root = await fetch(s.root, { redirect: 'manual' });
  assert.equal(root.status, 302);
  assert.equal(root.headers.get('location'), '_nar-tool/');
});

test('the built-in inspector opens the cache and verifies it clean in the browser', async (t) => {
  const s = await serve(copyCache('xz'), { bin: installedCopy(), folders: false });
  const page = await openPage(t, s.url + '#/keys');
  await page.fill('#keys-input', PUBLIC_KEY);
  await page.click('#keys-save');
  await page.goto(new URL('#/verify', page.url()).href);
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: 120000 });
  const summary = (await page.textContent('#verify-summary')).trim();
  assert.match(summary, /9 paths/);
  assert.match(summary, /OK: 0 problems, 0 warnings \(exit status 0\)/);
  await shot(page, 'embedded-verify.png');
});
