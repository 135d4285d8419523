// The inspector's "Verify the whole cache", timed in headless Chromium (benches/wasm-verify.sh):
// serves NAR_BENCH_CACHE with `nar-tool serve` (NAR_TOOL_BIN), trusts NAR_BENCH_KEY, clicks
// Verify and prints the seconds from the click to the summary. The summary must agree with
// NAR_BENCH_EXPECT (`nar-tool verify --json` of the same cache): the same paths, bytes and verdict.

import { readFileSync } from 'node:fs';
import { launchChromium } from '../www/test/browser.mjs';
import { startServe } from '../www/test/serve.mjs';

const { NAR_BENCH_CACHE: cache, NAR_BENCH_KEY: key, NAR_BENCH_EXPECT: expectFile } = process.env;
if (!cache || !key || !expectFile) throw new Error('NAR_BENCH_CACHE, NAR_BENCH_KEY and NAR_BENCH_EXPECT must be set');
const expected = JSON.parse(readFileSync(expectFile, 'utf8'));
const HOUR = 3600 * 1000;

const t0 = Date.now();
/** How long the page took to get there, on stderr (the seconds of the verification go to stdout). */
const mark = (what) => process.stderr.write(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
const server = await startServe(cache, {});
const browser = await launchChromium();
try {
  const page = await (await browser.newContext({ viewport: { width: 1366, height: 800 } })).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: HOUR });
  mark('page ready');
  await page.goto(new URL('#/keys', page.url()).href);
  await page.fill('#keys-input', key);
  await page.click('#keys-save');
  await page.waitForSelector('#keys-status span');
  await page.goto(new URL('#/verify', page.url()).href);
  // The whole listing known (serve publishes it): the button verifies the whole cache.
  await page.waitForSelector('#verify-all:has-text("whole cache"):not([disabled])', { timeout: HOUR });
  mark('the whole cache known');
  const started = Date.now();
  await page.click('#verify-all');
  await page.waitForSelector('#verify-summary', { timeout: HOUR });
  const seconds = (Date.now() - started) / 1000;
  const summary = await page.textContent('#verify-summary');
  const want = `${expected.paths} paths`;
  if (!summary.includes(want) || !summary.includes(expected.ok ? ' OK: ' : ' FAILED: ')) {
    throw new Error(`the inspector's summary ${JSON.stringify(summary)} disagrees with nar-tool verify (${want}, ok ${expected.ok})`);
  }
  if (errors.length) throw new Error(`errors in the page: ${errors.join('; ')}`);
  process.stdout.write(`${seconds.toFixed(2)}\n`);
} finally {
  await browser.close();
  await server.stop();
}
