// The inspector on caches with a lookup index (nar-tool-index/), in headless Chromium: the table,
// search, sort, a path (its narinfo fetched when opened), its closure and referrers all come from
// the index and must show what the same cache shows without it (every narinfo read); a path the
// index lists whose narinfo is gone, a damaged shard, and a cache that cannot be listed but has
// an index (another origin, plain static files).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { close, launch, openPage, serve } from './browser.mjs';
import { copyCache, narToolBin, removeTemporary, tempDir } from './serve.mjs';
import { syntheticCache, staticCors } from './caches.mjs';

const TOP = 'z8w6vc8pyk06rr4fm1h99ciaifp1kqdp';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

function index(cache) {
  execFileSync(narToolBin(), ['index', cache], { stdio: 'pipe' });
  return cache;
}

/** A copy of `cache` without its index. */
function withoutIndex(cache) {
  const copy = join(tempDir(), 'cache');
  cpSync(cache, copy, { recursive: true });
  rmSync(join(copy, 'nar-tool-index'), { recursive: true, force: true });
  return copy;
}

const rows = (page) => page.locator('table.paths tbody tr.row');
const complete = (page) => page.waitForSelector('body[data-index-complete="true"]', { timeout: 60000 });

/** What the path view shows of a path: the closure's count and size, the referrers, the tree's first level. */
async function pathFacts(page, url, hash) {
  await page.goto(`${url}#/path/${hash}`);
  await page.waitForSelector('#closure-count', { timeout: 60000 });
  await page.waitForSelector('#referrers-loading', { state: 'detached', timeout: 60000 });
  return {
    title: await page.textContent('h1'),
    closure: await page.textContent('#closure-count'),
    size: await page.getAttribute('#closure-size', 'title'),
    links: await page.$$eval('.cols section', (ss) => ss.map((s) => s.textContent)),
    tree: await page.$$eval('#closure-tree > details > :is(details, div)', (ns) => ns.map((n) => n.querySelector('a, span')?.textContent)),
  };
}

test('a cache with an index is shown from it, as it is shown from its narinfos', async (t) => {
  const cache = index(copyCache('xz'));
  const s = await serve(cache);
  const page = await openPage(t, s.url);
  await complete(page);
  await page.waitForSelector('#from-index');
  const plain = await serve(withoutIndex(cache));
  const other = await openPage(t, plain.url);
  await rows(other).first().waitFor();
  assert.equal(await other.locator('#from-index').count(), 0);
  // The same rows, in the same order, with the same totals.
  const table = (p) => p.$$eval('table.paths tbody tr.row', (trs) => trs.map((tr) => [...tr.cells].slice(0, 5).map((c) => c.textContent).join('|')));
  assert.deepEqual(await table(page), await table(other));
  assert.equal(await page.textContent('#paths-totals'), await other.textContent('#paths-totals'));
  for (const key of ['narSize', 'version']) {
    await page.click(`th[data-key="${key}"] button`);
    await other.click(`th[data-key="${key}"] button`);
    assert.deepEqual(await table(page), await table(other), `sorted by ${key}`);
  }
  await page.fill('#search', 'LIBDEMO');
  await other.fill('#search', 'LIBDEMO');
  await page.waitForFunction(() => / of /.test(document.querySelector('#paths-count').textContent));
  assert.equal(await page.textContent('#paths-count'), await other.textContent('#paths-count'));
  assert.deepEqual(await table(page), await table(other));
  // One path: its narinfo (fetched), closure, tree and referrers as without the index.
  const facts = await pathFacts(page, s.url, TOP);
  assert.deepEqual(facts, await pathFacts(other, plain.url, TOP));
  assert.equal(facts.closure, '8');
  await page.waitForSelector('#narinfo-fields');
  for (const hash of readdirSync(cache).filter((f) => f.endsWith('.narinfo')).map((f) => f.slice(0, 32))) {
    assert.deepEqual(await pathFacts(page, s.url, hash), await pathFacts(other, plain.url, hash), hash);
  }
});

test('a thousand paths in three shards: the first page from one shard, then the rest', async (t) => {
  const cache = index(syntheticCache(1300));
  const s = await serve(cache);
  const page = await openPage(t, null);
  // Shards are held back until the first page is shown: it needs the first one only.
  let release;
  const held = new Promise((r) => { release = r; });
  let first = null;
  await page.route('**/nar-tool-index/*.zst', async (route) => {
    first ??= route.request().url();
    if (route.request().url() !== first) await held;
    await route.continue();
  });
  await page.goto(s.url);
  await rows(page).first().waitFor();
  assert.match(await page.textContent('#filter-note'), /reading the index: \d+ of 1\u202f300 paths so far/);
  // Meanwhile a search is answered by the server, from the whole index.
  const names = readdirSync(cache).filter((f) => f.endsWith('.narinfo'))
    .map((f) => /^StorePath: (.*)$/m.exec(readFileSync(join(cache, f), 'utf8'))[1]).filter((p) => p.includes('pkg-77'));
  await page.fill('#search', 'pkg-77');
  await page.waitForFunction(() => /found by the server/.test(document.querySelector('#filter-note').textContent));
  assert.equal(await page.textContent('#paths-count'), `${names.length} of 1\u202f300`);
  const shown = await rows(page).evaluateAll((trs) => trs.map((tr) => tr.cells[2].textContent).sort());
  assert.deepEqual(shown, names.map((p) => p.slice('/nix/store/'.length, '/nix/store/'.length + 32)).sort());
  release();
  await complete(page);
  assert.equal(await page.textContent('#filter-note'), '');
  assert.equal(await page.textContent('#paths-count'), `${names.length} of 1\u202f300`, 'the same, from the index read whole');
  await page.fill('#search', '');
  await page.waitForFunction(() => document.querySelector('#paths-count').textContent === '1\u202f300');
});

test('a path the index lists without its narinfo, and a damaged shard, are shown as such', async (t) => {
  const cache = index(copyCache('xz'));
  unlinkSync(join(cache, `${TOP}.narinfo`));
  const s = await serve(cache);
  const page = await openPage(t, `${s.url}#/path/${TOP}`, { expected: /404/ });
  await page.waitForSelector('#narinfo-error');
  assert.match(await page.textContent('#narinfo-error'), /not in the cache.*the lookup index lists it/);
  assert.equal(await page.textContent('#closure-count'), '8');

  const damaged = index(syntheticCache(600));
  const manifest = JSON.parse(readFileSync(join(damaged, 'nar-tool-index/index.json'), 'utf8'));
  writeFileSync(join(damaged, 'nar-tool-index', manifest.shards[1].name), 'not a shard');
  const d = await serve(damaged);
  const other = await openPage(t, d.url);
  await other.waitForSelector('#index-error', { timeout: 60000 });
  assert.match(await other.textContent('#index-error'), new RegExp(`index shard ${manifest.shards[1].name}: its 11 bytes are not`));
  assert.equal(await other.textContent('#paths-count'), '512', 'what was read is still shown');
});

test('a cache that cannot be listed is opened through its index (another origin, static files)', async (t) => {
  const cache = index(copyCache('xz'));
  const statics = await staticCors(cache);
  t.after(() => statics.close());
  const s = await serve(copyCache('none'));
  const page = await openPage(t, `${s.url}?cache=${encodeURIComponent(`http://127.0.0.1:${statics.address().port}/`)}`);
  await complete(page);
  assert.equal(await rows(page).count(), readdirSync(cache).filter((f) => f.endsWith('.narinfo')).length);
  assert.equal(await page.locator('#roots-card').count(), 0, 'no roots asked for');
  const facts = await pathFacts(page, page.url().replace(/#.*/, ''), TOP);
  assert.equal(facts.closure, '8');
});
