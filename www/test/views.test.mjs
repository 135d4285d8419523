// The inspector's views for a Nix user, in headless Chromium against `nar-tool serve`: totals over
// the table and its filters (problems, no trusted signature), the nix.conf lines to use a cache,
// keys pasted as nix.conf writes them, the closure with each path's closure and added size (checked
// against sizes computed here from the narinfos) and its treemap, directory sizes and sorting in
// the file browser, the keyboard before the search box is used, the bytes of a large NAR while it
// is verified.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { hash as narHash } from '../../pkg/index.js';
import { copyCache, corpus, removeTemporary, tempDir } from './serve.mjs';
import { PUBLIC_KEY, close, launch, openPage, ready, saveKeys, serve, shot } from './browser.mjs';

const LIBDEMO = '5qk0fgkb9sfxmrbqjcs803wd2rjkaigy';
const TOP = 'z8w6vc8pyk06rr4fm1h99ciaifp1kqdp';
const APP = 'swf7rrkcsawh9sa0zhm4bchjhphk6mjv';
const OTHER_KEY = 'other-1:yYMhNDLBHTB6WnTD6q3tsE4WMbOxegTkeVlxA8D2rdM=';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

/** A cache's narinfos as { hash: { storePath, narSize, fileSize, references: [hash] } }. */
function narinfos(cache) {
  const out = {};
  for (const f of readdirSync(cache).filter((n) => n.endsWith('.narinfo'))) {
    const text = readFileSync(join(cache, f), 'utf8');
    const get = (k) => new RegExp(`^${k}: ?(.*)$`, 'm').exec(text)?.[1];
    out[f.slice(0, 32)] = {
      storePath: get('StorePath'),
      narSize: Number(get('NarSize')),
      fileSize: Number(get('FileSize')),
      references: (get('References') ?? '').split(' ').filter(Boolean).map((r) => r.slice(0, 32)),
    };
  }
  return out;
}

/** The hash parts reachable from `root`, never entering `avoid`. */
function reach(infos, root, avoid = null) {
  const seen = new Set([root]);
  for (const todo = [root]; todo.length; ) {
    for (const r of infos[todo.pop()].references) {
      if (r !== avoid && infos[r] && !seen.has(r)) {
        seen.add(r);
        todo.push(r);
      }
    }
  }
  return seen;
}

const narSum = (infos, hashes) => [...hashes].reduce((n, h) => n + infos[h].narSize, 0);

test('totals over the table; filters: paths with problems, paths without a trusted signature', async (t) => {
  const cache = copyCache('xz');
  // Damage: libdemo's NAR loses a byte in the middle; single-file's narinfo loses its signature.
  const infos = narinfos(cache);
  const lib = readFileSync(join(cache, `${LIBDEMO}.narinfo`), 'utf8');
  const narPath = join(cache, /^URL: (.*)$/m.exec(lib)[1]);
  const bytes = readFileSync(narPath);
  bytes[bytes.length >> 1] ^= 1;
  writeFileSync(narPath, bytes);
  const single = 'mnc6w5scb0k600cvh9ss511kmyvx9xc5';
  writeFileSync(join(cache, `${single}.narinfo`), readFileSync(join(cache, `${single}.narinfo`), 'utf8').replace(/^Sig: .*\n/m, ''));
  const s = await serve(cache);
  const page = await openPage(t, s.url);
  await page.locator('table.paths tr.row').first().waitFor();

  const all = Object.values(infos);
  const totalNar = all.reduce((n, i) => n + i.narSize, 0);
  const totalFile = all.reduce((n, i) => n + i.fileSize, 0);
  const titles = () => page.$$eval('#paths-totals span[title]', (ss) => ss.map((x) => x.title));
  assert.deepEqual(await titles(), [`${totalNar} bytes unpacked`, `${totalFile} bytes in the cache`]);
  assert.match(await page.textContent('#paths-totals'), /^\d[\d.]* \w?i?B NAR · \d[\d.]* \w?i?B files$/);
  // Searching narrows the totals to the rows shown.
  await page.fill('#search', 'libdemo');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 1);
  assert.deepEqual(await titles(), [`${infos[LIBDEMO].narSize} bytes unpacked`, `${infos[LIBDEMO].fileSize} bytes in the cache`]);
  assert.equal(await page.textContent('#paths-count'), '1 of 9');
  await page.fill('#search', '');

  // Without trusted keys every path lacks a trusted signature, and the page says why.
  await page.selectOption('#paths-filter', 'untrusted');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 9);
  assert.match(await page.textContent('#filter-note'), /no trusted keys/);
  // With the corpus key, only the path whose signature was removed.
  await saveKeys(page, PUBLIC_KEY);
  await page.goto(new URL('#/', page.url()).href);
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 1);
  assert.match(await page.locator('table.paths tr.row').first().textContent(), /single-file/);
  assert.equal(await page.inputValue('#paths-filter'), 'untrusted', 'the filter survives a visit elsewhere');

  // Problems: none known before verifying; the damaged NAR after.
  await page.selectOption('#paths-filter', 'problems');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 0);
  assert.match(await page.textContent('#filter-note'), /verify/);
  await page.goto(new URL('#/verify', page.url()).href);
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: 120000 });
  await page.goto(new URL('#/', page.url()).href);
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 2);
  const rows = await page.locator('table.paths tr.row').allTextContents();
  assert.ok(rows.some((r) => r.includes('libdemo')) && rows.some((r) => r.includes('single-file')), rows.join('\n'));
  assert.equal(await page.textContent('#filter-note'), '');
  await shot(page, 'paths-filtered.png');
});

test('keys: a nix.conf trusted-public-keys line is taken; what is not a key is said so and not saved', async (t) => {
  const s = await serve(copyCache('xz'));
  const page = await openPage(t, `${s.url}#/keys`);
  await page.fill('#keys-input', `trusted-public-keys = ${PUBLIC_KEY} ${OTHER_KEY} cache.nixos.org-1:notakey   # and a comment`);
  await page.click('#keys-save');
  await page.waitForSelector('#keys-invalid');
  assert.match(await page.textContent('#keys-status'), /^Saved 2 keys\./);
  assert.match(await page.textContent('#keys-invalid'), /cache\.nixos\.org-1:notakey: /);
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('nar-tool-inspector.trustedKeys')));
  assert.deepEqual(stored, [PUBLIC_KEY, OTHER_KEY]);
  assert.equal(await page.inputValue('#keys-input'), `${PUBLIC_KEY}\n${OTHER_KEY}\ncache.nixos.org-1:notakey`);
  await shot(page, 'keys-invalid.png');
  // Only invalid: nothing saved, nothing counted.
  await page.fill('#keys-input', 'garbage');
  await page.click('#keys-save');
  await page.waitForSelector('#keys-invalid');
  assert.match(await page.textContent('#keys-status'), /^Saved 0 keys\./);
  assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem('nar-tool-inspector.trustedKeys'))), []);
});

test('"use this cache": the nix.conf lines, with the trusted key that signs it', async (t) => {
  const s = await serve(copyCache('xz'));
  const page = await openPage(t, s.url);
  await page.click('#use-cache');
  await page.waitForSelector('#nix-conf');
  const origin = s.root.replace(/\/$/, ''); // the cache is at the root, the inspector under /_nar-tool/
  assert.equal(await page.textContent('#nix-conf'), `extra-substituters = ${origin}\n# extra-trusted-public-keys = corpus-public-1:…\n`);
  assert.match(await page.textContent('#nix-conf-keys'), /signed by corpus-public-1/);
  assert.match(await page.textContent('#cache-fields'), /StoreDir\/nix\/store/);
  await saveKeys(page, `${PUBLIC_KEY}\n${OTHER_KEY}`);
  await page.goto(`${s.url}#/cache`);
  await page.waitForSelector('#nix-conf');
  assert.equal(await page.textContent('#nix-conf'), `extra-substituters = ${origin}\nextra-trusted-public-keys = ${PUBLIC_KEY}\n`);
  assert.equal(await page.locator('#nix-conf-keys').count(), 0);
  await shot(page, 'use-cache.png');
});

test('the closure: each path\'s closure size and added size (nix-tree), a treemap of its bytes, why-depends', async (t) => {
  const cache = copyCache('xz');
  const infos = narinfos(cache);
  const s = await serve(cache);
  const page = await openPage(t, `${s.url}#/path/${TOP}`);
  await page.waitForSelector('#closure-tree');
  const closure = reach(infos, TOP);
  const total = narSum(infos, closure);
  assert.equal(await page.getAttribute('#closure-size', 'title'), `${total} bytes`);

  // Every node shown, at any depth: its closure size, and what it adds to the root's closure.
  // Open the whole tree first.
  for (let opened = 1; opened; ) {
    opened = await page.$$eval('#closure-tree details:not([open])', (ds) => {
      ds.forEach((d) => { d.open = true; });
      return ds.length;
    });
    await page.waitForTimeout(50);
  }
  const shown = await page.$$eval('#closure-tree [data-path]', (nodes) => nodes.map((n) => {
    const own = n.matches('details') ? n.querySelector(':scope > summary') : n;
    return {
      path: n.dataset.path,
      closure: own.querySelector('.closure-size').title,
      added: own.querySelector('.added-size').title,
    };
  }));
  assert.ok(shown.length >= closure.size, `${shown.length} nodes`);
  for (const node of shown) {
    const h = node.path.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    assert.equal(node.closure, `its closure: ${narSum(infos, reach(infos, h))} bytes`, node.path);
    const added = h === TOP ? total : total - narSum(infos, reach(infos, TOP, h));
    assert.equal(node.added, `${added} bytes: the paths only it brings into this closure`, node.path);
  }

  // The treemap: the root's box is the whole closure; boxes inside have areas in proportion to
  // what they add, and stay inside their parent.
  const boxes = await page.$$eval('#closure-treemap .tm-box', (bs) => bs.map((b) => {
    const r = b.getBoundingClientRect();
    return { path: b.dataset.path, added: Number(b.dataset.added), x: r.x, y: r.y, w: r.width, h: r.height };
  }));
  assert.equal(boxes[0].path.includes(TOP), true);
  assert.equal(boxes[0].added, total);
  const app = boxes.find((b) => b.path.includes(APP));
  assert.ok(app, 'app has a box');
  assert.equal(app.added, total - narSum(infos, reach(infos, TOP, APP)));
  const inner = (boxes[0].w - 4) * (boxes[0].h - 17);
  const expectedArea = (inner * app.added) / total;
  assert.ok(Math.abs(app.w * app.h - expectedArea) / expectedArea < 0.05, `app's area ${app.w * app.h} vs ${expectedArea}`);
  for (const b of boxes) {
    assert.ok(b.x >= boxes[0].x - 0.5 && b.y >= boxes[0].y - 0.5 && b.x + b.w <= boxes[0].x + boxes[0].w + 0.5 && b.y + b.h <= boxes[0].y + boxes[0].h + 0.5, b.path);
  }
  await page.locator('#closure-treemap').scrollIntoViewIfNeeded();
  await shot(page, 'closure-treemap.png');
  // A box is a link to its path.
  await page.click(`#closure-treemap .tm-box[data-path*="${APP}"]`, { position: { x: 3, y: 3 } });
  await page.waitForFunction((h) => location.hash === `#/path/${h}`, APP);

  // Why the closure holds libdemo: the chain of references.
  await page.goto(`${s.url}#/path/${TOP}`);
  await page.locator('summary', { hasText: 'paths of the closure' }).click();
  await page.locator('#closure-paths li', { hasText: 'libdemo-1.0-public' }).locator('button.why').click();
  const why = await page.locator('#closure-paths li', { hasText: 'libdemo-1.0-public' }).locator('.why-chain').textContent();
  assert.match(why, /closure-top-public → \w{32}-app-0\.9-public → \w{32}-libdemo-1\.0-public$/);
});

test('the file browser: directory sizes, sorted by size or name', async (t) => {
  const s = await serve(copyCache('xz'));
  const page = await openPage(t, `${s.url}#/path/${LIBDEMO}/files`);
  await page.waitForSelector('#file-list');
  const listing = JSON.parse(readFileSync(join(corpus, 'caches/xz', `${LIBDEMO}.ls`), 'utf8'));
  const sizeOf = (n) => (n.type === 'regular' ? n.size : n.type === 'directory' ? Object.values(n.entries).reduce((a, c) => a + sizeOf(c), 0) : 0);
  const rows = () => page.$$eval('#file-list tbody tr[data-name]', (trs) => trs.map((tr) => [tr.dataset.name, tr.dataset.size]));
  assert.deepEqual(await rows(), Object.entries(listing.root.entries).map(([n, c]) => [n, String(sizeOf(c))]));
  assert.match(await page.textContent('#file-list tbody'), new RegExp(String(sizeOf(listing.root.entries.lib))));
  await page.click('#sort-size');
  const bySize = await rows();
  assert.deepEqual(bySize.map((r) => Number(r[1])), bySize.map((r) => Number(r[1])).sort((a, b) => b - a));
  assert.equal(await page.getAttribute('th:has(#sort-size)', 'aria-sort'), 'descending');
  await page.click('#sort-size');
  assert.deepEqual((await rows()).map((r) => Number(r[1])), bySize.map((r) => Number(r[1])).reverse());
  await page.click('#sort-name');
  assert.deepEqual((await rows()).map((r) => r[0]), Object.keys(listing.root.entries));
  // Inside lib/: a symlink has no size; files sorted by size.
  await page.goto(`${s.url}#/path/${LIBDEMO}/files/lib`);
  await page.waitForSelector('#file-list');
  await page.click('#sort-size');
  const lib = await rows();
  assert.equal(lib.at(-1)[1], '', 'the symlink last');
  await shot(page, 'files-sorted.png');
});

test('arrow keys move in the table before the search box is used', async (t) => {
  const s = await serve(copyCache('xz'));
  const page = await openPage(t, s.url);
  await page.locator('table.paths tr.row').first().waitFor();
  assert.equal(await page.evaluate(() => document.activeElement === document.body || document.activeElement.id === 'main'), true);
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-rowindex')), '2');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-rowindex')), '4');
  const name = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  await page.keyboard.press('Enter');
  await page.waitForSelector('#narinfo-fields');
  assert.equal(await page.textContent('h1'), name);
  // Back with Esc, then the arrows again from where it was.
  await page.keyboard.press('Escape');
  await page.waitForSelector('table.paths');
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-rowindex')), '3');
});

/** A NAR of one regular file of `size` bytes. */
function singleFileNar(size) {
  const str = (b) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([len, b, Buffer.alloc((8 - (b.length % 8)) % 8)]);
  };
  const contents = Buffer.alloc(size);
  for (let i = 0; i < size; i++) contents[i] = (i * 2654435761) >>> 24;
  return Buffer.concat([...['nix-archive-1', '(', 'type', 'regular', 'contents'].map((x) => str(Buffer.from(x))), str(contents), str(Buffer.from(')'))]);
}

/** A static cache server with CORS that sends NAR files slowly (256 KiB every `delay` ms). */
function trickling(root, delay) {
  const server = http.createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    res.setHeader('Access-Control-Allow-Origin', '*');
    let body;
    try {
      body = readFileSync(join(root, path));
    } catch {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length });
    if (req.method === 'HEAD') return res.end();
    if (!path.startsWith('nar/')) return res.end(body);
    for (let at = 0; at < body.length && !res.destroyed; at += 256 * 1024) {
      res.write(body.subarray(at, at + 256 * 1024));
      await new Promise((r) => setTimeout(r, delay));
    }
    res.end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('verifying a large NAR shows the bytes read while it is read', async (t) => {
  const dir = tempDir('nar-tool-www-big-');
  const nar = singleFileNar(4 * 1024 * 1024);
  const sha = narHash(nar, 'sha256');
  const hash = '0'.repeat(31) + 'b';
  mkdirSync(join(dir, 'nar'));
  writeFileSync(join(dir, 'nar', 'big.nar'), nar);
  writeFileSync(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\n');
  writeFileSync(join(dir, `${hash}.narinfo`), [`StorePath: /nix/store/${hash}-big-1.0`, 'URL: nar/big.nar', 'Compression: none',
    `FileHash: ${sha}`, `FileSize: ${nar.length}`, `NarHash: ${sha}`, `NarSize: ${nar.length}`, 'References: ', ''].join('\n'));
  const slow = await trickling(dir, 120);
  t.after(() => slow.close());
  const s = await serve(copyCache('none')); // only to load the page from
  const other = `http://127.0.0.1:${slow.address().port}/`;
  const page = await openPage(t, `${s.url}?cache=${encodeURIComponent(other)}&roots=${hash}#/`);
  await page.locator('table.paths tr.row').first().waitFor();
  await page.goto(page.url().replace(/#.*/, '#/verify'));
  await page.click('#verify-all');
  // While the one path is being read: not done, some MiB read, and the page says so.
  await page.waitForFunction(() => {
    const j = window.__inspector.job;
    return j.running && j.progress.done === 0 && j.progress.bytes >= 1024 * 1024;
  }, null, { timeout: 30000, polling: 50 });
  assert.match(await page.textContent('#verify-status'), /Checking the 1 narinfos loaded: 0 \/ 1 paths, [1-4]\.0 MiB of 4\.0 MiB read/);
  // The meter follows the bytes.
  assert.ok(Number(await page.getAttribute('#verify-status [role=progressbar]', 'aria-valuenow')) >= 20);
  await shot(page, 'verify-large-nar.png');
  await page.waitForSelector('#verify-summary', { timeout: 60000 });
  assert.match(await page.textContent('#verify-summary'), /1 paths, 4\.0 MiB read, OK/);
  await ready(page);
});

test('a cache that cannot be opened says why: no answer, or an answer CORS hides', async (t) => {
  // A server that answers without Access-Control-Allow-Origin.
  const noCors = http.createServer((req, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('StoreDir: /nix/store\n'));
  await new Promise((r) => noCors.listen(0, '127.0.0.1', r));
  t.after(() => noCors.close());
  // A port nothing listens on.
  const gone = http.createServer();
  await new Promise((r) => gone.listen(0, '127.0.0.1', r));
  const gonePort = gone.address().port;
  await new Promise((r) => gone.close(r));
  const s = await serve(copyCache('none'));
  for (const [port, why] of [[noCors.address().port, /the server answered, but does not let this page read the answer \(CORS/], [gonePort, /no answer: the server is down or unreachable/]]) {
    const url = `http://127.0.0.1:${port}/`;
    // The browser logs the blocked request itself.
    const page = await openPage(t, null, { expected: /blocked by CORS policy|ERR_CONNECTION_REFUSED/ });
    await page.goto(`${s.url}?cache=${encodeURIComponent(url)}`);
    await ready(page);
    const error = await page.textContent('#open-error');
    assert.match(error, new RegExp(`^Cannot open ${url}: ${url}nix-cache-info: `));
    assert.match(error, why);
  }
});
