// The inspector against hostile caches, in headless Chromium. The payload sets a global and opens
// a dialog; it rides in narinfo URLs (javascript:, data:), in narinfo fields, in files the cache
// holds where the inspector's would be (js/app.js, index.html, an SVG), and in a cache on another
// origin opened by ?cache=. Neither the global nor a dialog may ever appear, no link may lead
// anywhere but http(s), and no request may leave the cache's origin (NARs named elsewhere) until
// the test clicks to allow that origin; then exactly that origin is fetched from.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { launchChromium, ready } from './browser.mjs';
import { startServe, copyCache, removeTemporary } from './serve.mjs';

const LIBDEMO = '5qk0fgkb9sfxmrbqjcs803wd2rjkaigy';
const TOOL = 'l3x0p6waaizfa1gbn5zzzjdfdkry4czk';
const APP = 'swf7rrkcsawh9sa0zhm4bchjhphk6mjv';
const TOP = 'z8w6vc8pyk06rr4fm1h99ciaifp1kqdp';
const PAYLOAD = "window.__pwned = 1; alert('pwned')";
// The same in a URL, without spaces (which are refused before the scheme is looked at).
const URL_PAYLOAD = "window.__pwned=1;alert('pwned')";

let browser;
const servers = [];

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await Promise.all(servers.map((s) => s.stop()));
  removeTemporary();
});

/** A static file server (with CORS) over `root` that counts the requests it gets. */
function staticServer(root) {
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url);
    res.setHeader('Access-Control-Allow-Origin', '*');
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    try {
      if (!path || path.includes('..')) throw new Error('no');
      const body = readFileSync(join(root, path));
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const origin = `http://127.0.0.1:${server.address().port}`;
    resolve({ server, hits, origin });
  }));
}

function setNarinfo(cache, hash, edit) {
  const file = join(cache, `${hash}.narinfo`);
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
}

const urlOf = (cache, hash) => /^URL: (.*)$/m.exec(readFileSync(join(cache, `${hash}.narinfo`), 'utf8'))[1];

/**
 * A copy of the xz corpus cache turned hostile: libdemo's URL is javascript:, app's data:, with
 * script in narinfo fields; tool's NAR is named at `elsewhere` (absolute), closure-top's by a
 * protocol-relative URL (neither has a .ls listing, so reading their files needs the NAR); and
 * the cache holds script and pages where the inspector's files would be.
 */
function hostileCache(elsewhere) {
  const cache = copyCache('xz');
  const tool = urlOf(cache, TOOL);
  const top = urlOf(cache, TOP);
  setNarinfo(cache, LIBDEMO, (t) => t.replace(/^URL: .*$/m, `URL: javascript:${URL_PAYLOAD}//`)
    + `X-Payload: <img src=x onerror="${PAYLOAD}"><script>${PAYLOAD}</script>\n`);
  setNarinfo(cache, APP, (t) => t.replace(/^URL: .*$/m, `URL: data:text/html,<script>${URL_PAYLOAD}</script>`));
  setNarinfo(cache, TOOL, (t) => t.replace(/^URL: .*$/m, `URL: ${elsewhere}/${tool}`));
  setNarinfo(cache, TOP, (t) => t.replace(/^URL: .*$/m, `URL: ${elsewhere.replace('http:', '')}/${top}`));
  unlinkSync(join(cache, `${TOOL}.ls`));
  unlinkSync(join(cache, `${TOP}.ls`));
  const script = `${PAYLOAD};\n`;
  const page = `<!doctype html><script>${PAYLOAD}</script><img src=x onerror="${PAYLOAD}">`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" onload="${PAYLOAD}"><script>${PAYLOAD}</script></svg>`;
  for (const dir of ['js', '_nar-tool/js', 'log']) mkdirSync(join(cache, dir), { recursive: true });
  for (const [name, text] of [['js/app.js', script], ['_nar-tool/js/app.js', script], ['index.html', page],
    ['_nar-tool/index.html', page], ['logo.svg', svg], ['log/logo.svg', svg], ['log/page.html', page]]) {
    writeFileSync(join(cache, name), text);
  }
  return { cache, tool, top };
}

/** A fresh page recording its dialogs, requests and errors. */
async function watchedPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { dialogs: [], requests: [], errors: [] };
  page.on('dialog', (d) => {
    seen.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('request', (r) => seen.requests.push(r.url()));
  page.on('pageerror', (e) => seen.errors.push(e.message));
  return { page, seen, close: () => context.close() };
}

/** Every link on the page leads to http(s) (or a blob of the page's own making). */
async function onlyHttpLinks(page, where) {
  const bad = await page.$$eval('a[href]', (as) => as.map((a) => a.href).filter((h) => !/^(https?|blob):/.test(h)));
  assert.deepEqual(bad, [], `${where}: links that are not http(s)`);
}

async function nothingRan(page, seen) {
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'the payload set its global');
  assert.deepEqual(seen.dialogs, [], 'the payload opened a dialog');
  assert.deepEqual(seen.errors, []);
}

test('a hostile cache served: nothing runs, links are http(s) only, nothing is fetched elsewhere until allowed', async (t) => {
  const original = copyCache('xz');
  const elsewhere = await staticServer(original);
  t.after(() => elsewhere.server.close());
  const { cache } = hostileCache(elsewhere.origin);
  const s = await startServe(cache);
  servers.push(s);
  const { page, seen, close } = await watchedPage();
  t.after(close);

  // The page's policy: no inline script (so no javascript: URL runs), connections to itself.
  const response = await page.goto(s.url);
  await ready(page);
  const headers = response.headers();
  assert.equal(headers['x-content-type-options'], 'nosniff');
  const csp = headers['content-security-policy'];
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/);
  assert.match(csp, /connect-src 'self';/);
  assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'|\*/);
  await page.locator('table.paths tr.row').first().waitFor();

  for (const hash of [LIBDEMO, APP, TOOL, TOP]) {
    await page.goto(`${s.url}#/path/${hash}`);
    await page.waitForSelector('#narinfo-fields');
    await onlyHttpLinks(page, hash);
  }
  // The javascript: and data: URLs are shown as text, with why, and offered as nothing else.
  await page.goto(`${s.url}#/path/${LIBDEMO}`);
  await page.waitForSelector('#url-refused');
  assert.match(await page.textContent('#url-refused'), /javascript: URLs are not followed/);
  assert.match(await page.textContent('#narinfo-fields'), /javascript:window\.__pwned/);
  assert.match(await page.textContent('#narinfo-fields'), /<img src=x onerror=/, 'fields are text');
  assert.equal(await page.locator('#download-nar').count(), 0);
  await page.click('#narinfo-fields code');
  await page.goto(`${s.url}#/path/${APP}`);
  await page.waitForSelector('#url-refused');
  assert.match(await page.textContent('#url-refused'), /data: URLs are not followed/);
  // Were script injected anyway, the policy stops it: an inline script, a javascript: link.
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__pwned = 1';
    document.body.append(script);
    const a = document.createElement('a');
    a.href = 'javascript:window.__pwned = 1';
    document.body.append(a);
    a.click();
  });
  await page.waitForTimeout(200);

  // A NAR elsewhere is shown, not fetched: by an absolute and by a protocol-relative URL.
  for (const hash of [TOOL, TOP]) {
    await page.goto(`${s.url}#/path/${hash}`);
    await page.waitForSelector('#url-elsewhere');
    await page.goto(`${s.url}#/path/${hash}/files`);
    await page.waitForSelector('#nar-elsewhere');
    assert.match(await page.textContent('#nar-elsewhere'), new RegExp(elsewhere.origin.replace(/\./g, '\\.')));
  }
  const origins = () => new Set(seen.requests.map((u) => new URL(u).origin));
  assert.deepEqual([...origins()], [new URL(s.url).origin], 'requests left the cache\'s origin');
  assert.deepEqual(elsewhere.hits, []);

  // The cache's own index.html, js/app.js, SVG: never served (a log is text, never a page).
  for (const name of ['index.html', 'js/app.js', 'logo.svg']) {
    assert.equal((await fetch(s.root + name)).status, 404, name);
  }
  for (const name of ['_nar-tool/index.html', '_nar-tool/js/app.js']) {
    assert.doesNotMatch(await (await fetch(s.root + name)).text(), /__pwned/, `${name} is the inspector's`);
  }
  const log = await fetch(s.root + 'log/page.html');
  assert.equal(log.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.match(log.headers.get('content-security-policy'), /sandbox/);
  await page.goto(s.root + 'log/logo.svg');
  await page.goto(s.root + 'index.html');
  await page.goto(`${s.url}#/path/${TOOL}/files`);
  await ready(page);
  await page.waitForSelector('#allow-origin');
  await nothingRan(page, seen);

  // The user allows that origin: the page reloads with it, and only then reads from it.
  await page.click('#allow-origin');
  await page.waitForURL(/allow=/);
  await ready(page);
  await page.waitForSelector('#file-list');
  assert.match(await page.textContent('#nar-status'), /hash and size match the narinfo/);
  assert.ok(elsewhere.hits.length > 0, 'fetched from the allowed origin');
  assert.deepEqual([...origins()].sort(), [new URL(s.url).origin, elsewhere.origin].sort());
  await nothingRan(page, seen);
});

test('a link to the inspector with ?cache= at a hostile cache elsewhere: nothing runs, nothing else is fetched', async (t) => {
  const original = copyCache('xz');
  const elsewhere = await staticServer(original);
  t.after(() => elsewhere.server.close());
  const { cache } = hostileCache(elsewhere.origin);
  const hostile = await staticServer(cache);
  t.after(() => hostile.server.close());
  const s = await startServe(copyCache('none'));
  servers.push(s);
  const { page, seen, close } = await watchedPage();
  t.after(close);
  const response = await page.goto(`${s.url}?cache=${encodeURIComponent(hostile.origin + '/')}`);
  await ready(page);
  // The page may connect to the cache it was opened with, and to nothing else.
  assert.match(response.headers()['content-security-policy'], new RegExp(`connect-src 'self' ${hostile.origin.replace(/\./g, '\\.')};`));
  await page.waitForSelector('#roots-card');
  await page.fill('#roots', `/nix/store/${TOP}-closure-top-public`);
  await page.click('#load-roots');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 8);
  for (const hash of [LIBDEMO, APP, TOOL, TOP]) {
    await page.goto(page.url().replace(/#.*/, `#/path/${hash}`));
    await page.waitForSelector('#narinfo-fields');
    await onlyHttpLinks(page, hash);
  }
  await page.goto(page.url().replace(/#.*/, `#/path/${TOOL}/files`));
  await page.waitForSelector('#nar-elsewhere');
  // Verifying reads only the cache (a NAR named elsewhere is a problem, not a fetch).
  await page.goto(page.url().replace(/#.*/, '#/verify'));
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: 60000 });
  assert.match(await page.textContent('#problems'), /url-outside-cache/);
  const origins = new Set(seen.requests.map((u) => new URL(u).origin));
  assert.deepEqual([...origins].sort(), [new URL(s.url).origin, hostile.origin].sort());
  assert.deepEqual(elsewhere.hits, []);
  await nothingRan(page, seen);
});
