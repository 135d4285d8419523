// The verify worker reads small NARs in bulk from nar-tool serve (`_nar-tool/files`, www/js/
// bundle.js): in headless Chromium on a cache of 1 100 small paths (two pages of narinfo texts,
// nine batches), one damaged (a byte flipped in its NAR) and one whose NAR is gone, the report
// is the CLI's to the byte, and the server saw batches, not a request per NAR. Without serve's
// endpoint (a server that answers it 404) every NAR is fetched by itself, to the same report.
// Shared between workers (the default from 256 paths; three with `?verify-workers=3`), each
// worker asks only for its own batches: the same report, no batch asked for twice.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, unlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PUBLIC_KEY, close, launch, openPage, ready, saveKeys, serve } from './browser.mjs';
import { narToolBin, removeTemporary } from './serve.mjs';
import { smallPathsCache } from './caches.mjs';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

let cache = null;
/** The damaged cache, made once. */
function damagedCache() {
  if (cache) return cache;
  cache = smallPathsCache(1100);
  const narinfos = readdirSync(cache).filter((f) => f.endsWith('.narinfo')).sort();
  const urlOf = (n) => /^URL: (.*)$/m.exec(readFileSync(join(cache, n), 'utf8'))[1];
  const flipped = join(cache, urlOf(narinfos[5]));
  const bytes = readFileSync(flipped);
  bytes[bytes.length - 6] ^= 0x01;
  writeFileSync(flipped, bytes);
  unlinkSync(join(cache, urlOf(narinfos[1050])));
  return cache;
}

function cliVerify(dir) {
  const r = spawnSync(narToolBin(), ['verify', '--json', dir, '--trusted-key', PUBLIC_KEY], { encoding: 'utf8' });
  assert.ok(r.stdout, `nar-tool verify printed nothing: ${r.stderr}`);
  return { report: JSON.parse(r.stdout), status: r.status };
}

/**
 * Verifies the whole cache in the page; the report and the request lines serve logged meanwhile.
 * `prepare(page)` runs before the page is opened (to route its requests).
 */
async function verifyInPage(t, s, prepare = async () => {}, query = '') {
  const page = await openPage(t, null);
  await prepare(page);
  await page.goto(`${s.url}${query}`);
  await ready(page);
  await saveKeys(page, PUBLIC_KEY);
  await page.goto(new URL('#/verify', page.url()).href);
  await page.waitForSelector('#verify-all:has-text("whole cache"):not([disabled])', { timeout: 60000 });
  const from = s.log.length;
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: 180000 });
  const report = await page.evaluate(() => window.__inspector.job.report);
  const sharedBatches = await page.evaluate(() => window.__inspector.job.sharedBatches);
  const requests = s.log.slice(from).split('\n').filter((l) => /"GET /.test(l));
  return { report, requests, sharedBatches };
}

test('small NARs come in batches from serve, and the report is the CLI one, damage included', async (t) => {
  const dir = damagedCache();
  const cli = cliVerify(dir);
  const kinds = cli.report.problems.map((p) => p.kind);
  assert.equal(cli.report.paths, 1100);
  assert.ok(kinds.includes('missing-nar'), kinds.join(' '));
  assert.ok(cli.report.problems.length >= 2, JSON.stringify(cli.report.problems));
  const s = await serve(dir, { quiet: false });
  const { report, requests } = await verifyInPage(t, s);
  assert.deepEqual(report, cli.report);
  const batches = requests.filter((l) => l.includes('"GET /_nar-tool/files?'));
  const single = requests.filter((l) => l.includes('"GET /nar/'));
  assert.ok(batches.length >= Math.ceil(1100 / 128) && batches.length <= 2 * Math.ceil(1100 / 128), `${batches.length} batches`);
  assert.deepEqual(single, [], 'no NAR fetched by itself');
});

test('a server without the endpoint: every NAR by itself, the same report', async (t) => {
  const dir = damagedCache();
  const cli = cliVerify(dir);
  const s = await serve(dir, { quiet: false });
  // The endpoint answers 404, as another server would.
  const { report, requests } = await verifyInPage(t, s, (page) =>
    page.context().route('**/_nar-tool/files?**', (route) => route.fulfill({ status: 404, body: 'not found' })),
  );
  assert.deepEqual(report, cli.report);
  const single = requests.filter((l) => l.includes('"GET /nar/'));
  assert.ok(single.length >= 1099, `${single.length} NARs fetched by themselves`);
});

test('shared between three workers: the same report, each batch asked for once', async (t) => {
  const dir = damagedCache();
  const cli = cliVerify(dir);
  const s = await serve(dir, { quiet: false });
  const { report, requests, sharedBatches } = await verifyInPage(t, s, async () => {}, '?verify-workers=3');
  assert.deepEqual(report, cli.report);
  // Two helpers, each ~a third of 1 100 paths, 16 checks a text.
  assert.ok(sharedBatches >= 2 * Math.floor(1100 / 3 / 16), `the helpers sent ${sharedBatches} texts of checks`);
  const batches = requests.filter((l) => l.includes('"GET /_nar-tool/files?'));
  const single = requests.filter((l) => l.includes('"GET /nar/'));
  assert.ok(batches.length >= Math.ceil(1100 / 128) && batches.length <= Math.ceil(1100 / 128) + 3, `${batches.length} batches`);
  assert.deepEqual(single, [], 'no NAR fetched by itself');
});
