// The inspector end to end, in real headless Chromium (Debian's, driven by playwright-core),
// against `nar-tool serve` on copies of the corpus caches: find a path, open it, browse its NAR
// and read files, verify clean; a damaged cache shows the CLI's problems; a local folder; a cache
// that cannot be listed; 10 000 narinfos. Screenshots go to target/www-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, unlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PUBLIC_KEY, close, launch, openPage, ready, serve, shot } from './browser.mjs';
import { copyCache, corpus, narToolBin, removeTemporary } from './serve.mjs';
import { syntheticCache, staticCors } from './caches.mjs';

const LIBDEMO = '5qk0fgkb9sfxmrbqjcs803wd2rjkaigy';
const TOOL = 'l3x0p6waaizfa1gbn5zzzjdfdkry4czk';
const APP = 'swf7rrkcsawh9sa0zhm4bchjhphk6mjv';
const TOP = 'z8w6vc8pyk06rr4fm1h99ciaifp1kqdp';
const SINGLE_FILE = 'mnc6w5scb0k600cvh9ss511kmyvx9xc5';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

function rowsShown(page) {
  return page.locator('table.paths tbody tr.row');
}

/** `nar-tool verify --json`, as the report object. */
function cliVerify(cache, keys = []) {
  const args = ['verify', '--json', cache, ...keys.flatMap((k) => ['--trusted-key', k])];
  const r = spawnSync(narToolBin(), args, { encoding: 'utf8' });
  assert.ok(r.stdout, `nar-tool verify printed nothing: ${r.stderr}`);
  return { report: JSON.parse(r.stdout), status: r.status };
}

async function pageProblems(page) {
  return page.$$eval('#problems tr.problem', (rows) => rows.map((r) => ({
    kind: r.cells[0].textContent.trim(),
    path: r.cells[1].textContent.trim(),
    message: r.cells[2].textContent.trim(),
    // What the check compared, when it compared two values (as in the CLI's JSON).
    ...r.dataset,
  })));
}

async function verifyInPage(page) {
  await page.goto(new URL('#/verify', page.url()).href);
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: 120000 });
  return (await page.textContent('#verify-summary')).trim();
}

test('lists every path of the served cache, finds one by search, opens it with the keyboard', async (t) => {
  const cache = copyCache('xz');
  const s = await serve(cache);
  const page = await openPage(t, s.url);
  await rowsShown(page).first().waitFor();
  assert.equal(await rowsShown(page).count(), 9);
  assert.match(await page.textContent('.table-head'), /9/);
  await shot(page, 'paths.png');

  // "/" focuses the search; a name narrows the table to one row.
  await page.locator('body').press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'search');
  await page.keyboard.type('libdemo');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 1);
  assert.match(await rowsShown(page).first().textContent(), /libdemo/);
  assert.match(await rowsShown(page).first().textContent(), /1\.0-public/);
  // A hash part finds it too.
  await page.fill('#search', TOOL.slice(0, 12));
  await page.waitForFunction(() => document.querySelector('table.paths tr.row')?.textContent.includes('tool'));
  assert.equal(await rowsShown(page).count(), 1);
  await page.fill('#search', 'libdemo');
  await page.waitForFunction(() => document.querySelector('table.paths tr.row')?.textContent.includes('libdemo'));

  // ↓ moves into the rows, Enter opens.
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#narinfo-fields');
  assert.equal(new URL(page.url()).hash, `#/path/${LIBDEMO}`);
  const fields = await page.textContent('#narinfo-fields');
  const narinfo = readFileSync(join(cache, `${LIBDEMO}.narinfo`), 'utf8');
  for (const key of ['StorePath', 'URL', 'FileHash', 'NarHash', 'Deriver']) {
    const value = new RegExp(`^${key}: (.*)$`, 'm').exec(narinfo)[1];
    assert.ok(fields.includes(value), `${key} ${value} shown`);
  }
  assert.match(fields, /NarSize201032/);
  // Referrers: tool and app reference libdemo.
  const text = await page.textContent('main');
  assert.match(text, /Referrers \(2\)/);
  assert.ok(text.includes(`${TOOL}-tool-2.3-public`));

  // Esc goes back to the table, the row still focused; sorting by NAR size works.
  await page.keyboard.press('Escape');
  await page.waitForSelector('table.paths');
  assert.equal(await page.evaluate(() => document.activeElement.closest('tr')?.textContent.includes('libdemo')), true);
  await page.fill('#search', '');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 9);
  await page.click('th[data-key="narSize"] button');
  const firstSmall = await rowsShown(page).first().textContent();
  await page.click('th[data-key="narSize"] button');
  const firstLarge = await rowsShown(page).first().textContent();
  assert.match(firstLarge, /edge-cases/);
  assert.doesNotMatch(firstSmall, /edge-cases/);
});

test('one path: signatures against a trusted key, references, the closure', async (t) => {
  const s = await serve(copyCache('xz'));
  const page = await openPage(t, s.url + '#/keys');
  await page.fill('#keys-input', PUBLIC_KEY);
  await page.click('#keys-save');
  assert.match(await page.textContent('#keys-status'), /Saved 1 key/);
  // The keys persist (localStorage) across a reload.
  await page.reload();
  await ready(page);
  await page.goto(s.url + `#/path/${TOP}`);
  await page.waitForSelector('#narinfo-fields');
  assert.match(await page.textContent('#narinfo-fields'), /valid/);
  assert.equal(await page.textContent('#closure-count'), '8');
  const closureBytes = [TOP, APP, TOOL, LIBDEMO, '12221svl9zlcqbffq6hxanhsxsk7wlyr', SINGLE_FILE, '8bswc883h867a21h70j0gvrppyavddgp', 'gn07vq3ysff2m4mz8scgjm7nmgaffhih']
    .map((h) => Number(/^NarSize: (\d+)$/m.exec(readFileSync(join(corpus, 'caches/xz', `${h}.narinfo`), 'utf8'))[1]))
    .reduce((a, b) => a + b, 0);
  assert.equal(await page.getAttribute('#closure-size', 'title'), `${closureBytes} bytes`);
  // The tree: closure-top → app → tool, opened one level at a time.
  const tree = page.locator('#closure-tree');
  assert.match(await tree.textContent(), /app-0\.9-public/);
  // The disclosure triangle (the name itself is a link to the path).
  await tree.locator('details details summary', { hasText: 'app-0.9' }).first().click({ position: { x: 4, y: 8 } });
  await tree.locator('a', { hasText: 'tool-2.3-public' }).first().waitFor();
  // Why the closure holds libdemo: closure-top → app → libdemo, the shortest chain.
  await page.locator('summary', { hasText: 'paths of the closure' }).click();
  await page.locator('#closure-paths li', { hasText: 'libdemo-1.0-public' }).locator('button.why').click();
  const why = await page.locator('#closure-paths li', { hasText: 'libdemo-1.0-public' }).locator('.why-chain').textContent();
  assert.match(why, /^: \w{32}-closure-top-public → \w{32}-app-0\.9-public → \w{32}-libdemo-1\.0-public$/);
  await shot(page, 'path.png');
  // A reference is a link to its path.
  await page.click(`a[href="#/path/${APP}"]`);
  await page.waitForFunction((h) => location.hash === `#/path/${h}`, APP);
  assert.match(await page.textContent('h1'), /app-0\.9-public/);
  await page.waitForSelector('#closure-tree');
  await shot(page, 'inspector.png'); // docs/inspector.png, shown by the README, is a copy
  // In the table, the signature column says the signature is valid.
  await page.goto(s.url + '#/');
  await rowsShown(page).first().waitFor();
  assert.match(await rowsShown(page).first().textContent(), /✓ corpus-public-1/);
  // A wrong key makes it untrusted.
  await page.goto(s.url + '#/keys');
  await page.fill('#keys-input', 'other-1:yYMhNDLBHTB6WnTD6q3tsE4WMbOxegTkeVlxA8D2rdM=');
  await page.click('#keys-save');
  await page.goto(s.url + `#/path/${TOP}`);
  await page.waitForSelector('#narinfo-fields');
  assert.match(await page.textContent('#narinfo-fields'), /untrusted key/);
});

test('browses into a NAR: directories, text, hex, symlinks, downloads', async (t) => {
  const cache = copyCache('xz');
  const s = await serve(cache);
  const page = await openPage(t, s.url + `#/path/${LIBDEMO}`);
  await page.click('#browse-files');
  await page.waitForSelector('#file-list');
  assert.match(await page.textContent('#nar-status'), new RegExp(`${LIBDEMO}\\.ls`));
  const names = await page.$$eval('#file-list td.name a', (as) => as.map((a) => a.textContent));
  assert.deepEqual(names, ['include', 'lib']);
  await page.click('#file-list a:text-is("include")');
  await page.click('#file-list a:text-is("demo.h")');
  await page.waitForSelector('#file-contents pre.text');
  assert.equal(await page.textContent('#file-contents pre'), 'int demo(void);\n');
  await shot(page, 'file-text.png');

  // Esc goes up a directory; a symlink is followed inside the NAR; a binary shows as hex.
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => location.hash.endsWith('/files/include'));
  await page.goto(s.url + `#/path/${LIBDEMO}/files/lib`);
  await page.waitForSelector('#file-list');
  const lib = await page.textContent('#file-list');
  assert.match(lib, /200000/);
  assert.match(lib, /libdemo\.so\.1 → libdemo\.so/);
  await page.click('#file-list a:text-is("libdemo.so.1")');
  await page.waitForSelector('#file-contents pre.hex');
  assert.match(await page.textContent('main'), /is a symlink to libdemo\.so/);
  const hex = await page.textContent('#file-contents pre.hex');
  const real = execFileSync(narToolBin(), ['cat', join(corpus, `nar/${LIBDEMO}-libdemo-1.0-public.nar`), '/lib/libdemo.so']);
  const firstLine = hex.split('\n')[0];
  assert.ok(firstLine.startsWith('00000000  ' + [...real.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ')), firstLine);
  await shot(page, 'file-hex.png');

  // Download: the whole file, byte for byte.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-file')]);
  assert.equal(download.suggestedFilename(), 'libdemo.so');
  const saved = readFileSync(await download.path());
  assert.ok(saved.equals(real), 'downloaded bytes = nar-tool cat');

  // A text file of another path, and a symlink leaving its NAR for another path of the cache.
  await page.goto(s.url + `#/path/${TOOL}/files/bin/tool`);
  await page.waitForSelector('#file-contents pre.text');
  assert.match(await page.textContent('#file-contents pre'), new RegExp(`exec /nix/store/${LIBDEMO}-libdemo-1.0-public/lib/libdemo.so`));
  await page.goto(s.url + `#/path/${APP}/files/README`);
  await page.waitForSelector('#follow-outside');
  await page.click('#follow-outside');
  await page.waitForSelector('#file-contents pre');
  assert.match(page.url(), /12221svl9zlcqbffq6hxanhsxsk7wlyr\/files\/text\.txt$/);
  // A store path that is a single file.
  await page.goto(s.url + `#/path/${SINGLE_FILE}/files`);
  await page.waitForSelector('#file-contents pre');
  const single = execFileSync(narToolBin(), ['cat', join(corpus, `nar/${SINGLE_FILE}-single-file-public.nar`), '/']).toString();
  assert.equal(await page.textContent('#file-contents pre'), single);
});

test('a cache without .ls listings: the listing comes from the NAR, checked against the narinfo', async (t) => {
  const s = await serve(copyCache('xz-parallel'));
  const page = await openPage(t, s.url + `#/path/${LIBDEMO}/files/include/demo.h`);
  await page.waitForSelector('#file-contents pre.text');
  assert.equal(await page.textContent('#file-contents pre'), 'int demo(void);\n');
  const status = await page.textContent('#nar-status');
  assert.match(status, /from the NAR/);
  assert.match(status, /hash and size match the narinfo/);
});

test('large NARs are streamed, never held whole: listing, ranges, slices', async (t) => {
  // Every NAR counts as large here (the threshold is lowered through a test hook).
  for (const [name, expectFrom] of [['xz', /\.ls/], ['xz-parallel', /the NAR \(streamed\)/], ['none', /\.ls/], ['bzip2', /\.ls/]]) {
    const s = await serve(copyCache(name));
    const page = await openPage(t, s.url);
    await page.evaluate(() => { window.__inspector.app.cache.fullLimit = 0; });
    await page.goto(s.url + `#/path/${LIBDEMO}/files/include/demo.h`);
    await page.waitForSelector('#file-contents pre.text');
    assert.equal(await page.textContent('#file-contents pre'), 'int demo(void);\n', name);
    assert.match(await page.textContent('#nar-status'), expectFrom, name);
    await page.goto(s.url + `#/path/${LIBDEMO}/files/lib/libdemo.so.1`);
    await page.waitForSelector('#file-contents pre.hex');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-file')]);
    const real = execFileSync(narToolBin(), ['cat', join(corpus, `nar/${LIBDEMO}-libdemo-1.0-public.nar`), '/lib/libdemo.so']);
    assert.ok(readFileSync(await download.path()).equals(real), `${name}: the streamed file = nar-tool cat`);
    assert.equal(await page.evaluate(() => window.__inspector.app.cache.fullLimit), 0, 'no reload happened');
  }
});

test('verifies the cache clean, as the CLI does', async (t) => {
  const cache = copyCache('xz');
  const s = await serve(cache);
  const page = await openPage(t, s.url + '#/keys');
  await page.fill('#keys-input', PUBLIC_KEY);
  await page.click('#keys-save');
  const summary = await verifyInPage(page);
  const cli = cliVerify(cache, [PUBLIC_KEY]);
  assert.equal(cli.status, 0);
  assert.match(summary, /9 paths/);
  assert.match(summary, /OK: 0 problems, 0 warnings \(exit status 0\)/);
  assert.equal(await page.locator('#problems').count(), 0);
  const report = await page.evaluate(() => window.__inspector.job.report);
  assert.deepEqual(report, cli.report);
  await shot(page, 'verify-clean.png');
});

test('a damaged cache: the page lists the problems the CLI finds, on the damaged paths', async (t) => {
  const cache = copyCache('xz');
  // Flip a byte in libdemo's NAR, remove single-file's NAR, leave an orphan NAR behind.
  const narinfo = readFileSync(join(cache, `${LIBDEMO}.narinfo`), 'utf8');
  const nar = join(cache, /^URL: (.*)$/m.exec(narinfo)[1]);
  const bytes = readFileSync(nar);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  writeFileSync(nar, bytes);
  const single = readFileSync(join(cache, `${SINGLE_FILE}.narinfo`), 'utf8');
  unlinkSync(join(cache, /^URL: (.*)$/m.exec(single)[1]));
  writeFileSync(join(cache, 'nar/0000000000000000000000000000000000000000000000000000.nar.xz'), 'orphan');
  // A narinfo name that is no key: listed, never served, judged by its name alone.
  writeFileSync(join(cache, 'bogus.narinfo'), single);
  const cli = cliVerify(cache, [PUBLIC_KEY]);
  assert.notEqual(cli.status, 0);
  const kinds = cli.report.problems.map((p) => p.kind);
  assert.ok(kinds.includes('missing-nar') && kinds.includes('orphan-nar'), kinds.join(' '));
  assert.ok(cli.report.problems.some((p) => p.path.includes(LIBDEMO)), 'the CLI reports the flipped byte');
  assert.ok(cli.report.problems.some((p) => p.kind === 'malformed-narinfo' && p.path === 'bogus.narinfo'), 'the CLI judges bogus.narinfo');

  const s = await serve(cache);
  assert.ok((await (await fetch(s.root + '_nar-tool/narinfos')).json()).items.includes('bogus.narinfo'));
  assert.equal((await fetch(s.root + 'bogus.narinfo')).status, 404, 'not a key: never served');
  const page = await openPage(t, s.url + '#/keys');
  const asked = [];
  page.on('request', (r) => asked.push(new URL(r.url()).pathname));
  await page.fill('#keys-input', PUBLIC_KEY);
  await page.click('#keys-save');
  const summary = await verifyInPage(page);
  assert.ok(!asked.some((p) => p.endsWith('/bogus.narinfo')), 'the inspector judges the name, it does not fetch it');
  assert.match(summary, /FAILED/);
  assert.match(summary, new RegExp(`exit status ${cli.status}\\)`));
  assert.deepEqual(await pageProblems(page), cli.report.problems);
  await shot(page, 'verify-damaged.png');

  // The damaged path's page shows its problem; its row in the table is marked.
  const libProblem = cli.report.problems.find((p) => p.path.includes(LIBDEMO));
  await page.click(`#problems a[href="#/path/${LIBDEMO}"]`);
  await page.waitForSelector('#path-problems');
  assert.match(await page.textContent('#path-problems'), new RegExp(libProblem.kind));
  await page.goto(s.url + '#/');
  await page.fill('#search', 'libdemo');
  await page.waitForSelector('table.paths tr.row.has-problem');
});

test('verifies one closure; a long verification can be cancelled', async (t) => {
  const cache = copyCache('xz');
  const s = await serve(cache);
  const page = await openPage(t, s.url + `#/path/${TOOL}`);
  await page.click('button:has-text("Verify this closure")');
  await page.waitForSelector('#verify-summary', { timeout: 60000 });
  assert.match(await page.textContent('#verify-summary'), /2 paths.*OK/);
  assert.match(await page.textContent('#verify-status'), /closure of .*tool-2\.3-public/);

  // Cancel: a cache of many paths all pointing at the large edge-cases NAR.
  const big = syntheticCache(400, { nar: 'edge-cases' });
  const s2 = await serve(big);
  const page2 = await openPage(t, s2.url + '#/verify');
  await page2.click('#verify-all');
  await page2.waitForFunction(() => (window.__inspector.job.progress?.done ?? 0) > 0, null, { timeout: 60000 });
  await page2.click('#verify-cancel');
  await page2.waitForSelector('#verify-cancelled');
  assert.equal(await page2.evaluate(() => window.__inspector.job.running), false);
  assert.equal(await page2.locator('#verify-summary').count(), 0);
  // And it can run again afterwards.
  assert.equal(await page2.isEnabled('#verify-all'), true);
});

test('a local folder, chosen with the directory picker: browse and verify without a server', async (t) => {
  const cache = copyCache('zstd');
  const s = await serve(copyCache('none')); // only to load the page from
  const page = await openPage(t, s.url + '#/open');
  await page.setInputFiles('#folder-input', cache);
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 9);
  assert.match(await page.textContent('#cache-label'), /cache\//);
  await page.goto(s.url + `#/path/${LIBDEMO}/files/include/demo.h`);
  // A hash change keeps the folder open (a reload would not).
  await page.waitForSelector('#file-contents pre.text');
  assert.equal(await page.textContent('#file-contents pre'), 'int demo(void);\n');
  const summary = await verifyInPage(page);
  assert.match(summary, /9 paths.*OK: 0 problems/);
  const report = await page.evaluate(() => window.__inspector.job.report);
  assert.deepEqual(report, cliVerify(cache).report);
});

test('a cache that cannot be listed (another origin, plain static files): roots and references', async (t) => {
  const cache = copyCache('xz');
  const staticServer = await staticCors(cache);
  t.after(() => staticServer.close());
  const s = await serve(copyCache('none'));
  const other = `http://127.0.0.1:${staticServer.address().port}/`;
  const page = await openPage(t, `${s.url}?cache=${encodeURIComponent(other)}`);
  await page.waitForSelector('#roots-card');
  await page.fill('#roots', `/nix/store/${TOP}-closure-top-public`);
  await page.click('#load-roots');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 8);
  assert.match(page.url(), /roots=/);
  const summary = await verifyInPage(page);
  assert.match(summary, /8 paths.*OK/);
  // A reload keeps the roots (they are in the URL).
  await page.goto(page.url().replace(/#.*/, '#/'));
  await ready(page);
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 8);
});

test('10 000 narinfos: loaded with a progress bar, searched, sorted, scrolled with a bounded DOM', async (t) => {
  const n = 10000;
  const cache = syntheticCache(n);
  const s = await serve(cache, { threads: 8 });
  const page = await openPage(t, null);
  const t0 = Date.now();
  await page.goto(s.url);
  await ready(page);
  const loadMs = Date.now() - t0;
  await rowsShown(page).first().waitFor();
  assert.match(await page.textContent('.table-head'), /10\u202f000/);
  const inDom = await rowsShown(page).count();
  assert.ok(inDom < 120, `${inDom} rows in the DOM`);
  await shot(page, 'large.png');
  // Search by a hash part, then by name.
  const names = readdirSync(cache).filter((f) => f.endsWith('.narinfo')).sort();
  const target = names[1234].slice(0, 32);
  const ts = Date.now();
  await page.fill('#search', target);
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 1);
  const searchMs = Date.now() - ts;
  await page.fill('#search', 'pkg-77');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length > 0);
  await page.fill('#search', '');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length > 1);
  // Sort by references, scroll to the end with the keyboard.
  await page.click('th[data-key="refs"] button');
  assert.match(await rowsShown(page).first().locator('td').nth(7).textContent(), /^0$/);
  await rowsShown(page).first().focus();
  await page.keyboard.press('End');
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-rowindex') === '10001');
  assert.ok((await rowsShown(page).count()) < 120);
  assert.match(await page.evaluate(() => document.activeElement.textContent), /^pkg\d+[-.0-9]+[0-9a-z]{32}.*3$/);
  console.log(`# 10 000 narinfos: page ready in ${loadMs} ms, search in ${searchMs} ms`);
});
