// The inspector on a cache's lookup index, timed in headless Chromium (benches/index.sh): serves
// NAR_BENCH_CACHE (a cache with nar-tool-index/) with `nar-tool serve` (NAR_TOOL_BIN) and prints,
// as JSON: the seconds from navigation to the first page of rows, to the whole index read, a
// name search and a sort of every row, a path opened (narinfo fetched or not: its closure from
// the index), the page's JS heap and the peak resident memory of the largest Chromium process
// (the renderer: the page and its wasm).

import { readdirSync, readFileSync } from 'node:fs';
import { launchChromium } from '../www/test/browser.mjs';
import { startServe } from '../www/test/serve.mjs';

const { NAR_BENCH_CACHE: cache, NAR_BENCH_SEARCH: search = 'pkg-4242-' } = process.env;
if (!cache) throw new Error('NAR_BENCH_CACHE must be set');
const MINUTE = 60 * 1000;

/** The processes under `pid` (here: Chromium's, and the server). */
function descendants(pid) {
  const parent = new Map();
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      parent.set(Number(p), Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const out = [];
  const walk = (p) => {
    for (const [child, pp] of parent) if (pp === p) { out.push(child); walk(child); }
  };
  walk(pid);
  return out;
}

function isChromium(pid) {
  try {
    return /chrom/i.test(readFileSync(`/proc/${pid}/comm`, 'utf8'));
  } catch {
    return false;
  }
}

/** A process's peak resident memory (VmHWM), in KiB. */
function peakKiB(pid) {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return 0;
  }
}

const server = await startServe(cache, {});
const browser = await launchChromium();
const out = {};
try {
  const page = await (await browser.newContext({ viewport: { width: 1366, height: 800 } })).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const t0 = Date.now();
  await page.goto(server.url);
  await page.waitForSelector('table.paths tbody tr.row', { timeout: MINUTE });
  out.firstPageSeconds = (Date.now() - t0) / 1000;
  await page.waitForSelector('body[data-index-complete="true"]', { timeout: 10 * MINUTE });
  out.wholeIndexSeconds = (Date.now() - t0) / 1000;
  out.rowsShown = await page.textContent('#paths-count');
  let t = Date.now();
  await page.fill('#search', search);
  await page.waitForFunction(() => / of /.test(document.querySelector('#paths-count')?.textContent ?? ''), null, { timeout: MINUTE });
  out.searchSeconds = (Date.now() - t) / 1000;
  out.searchCount = await page.textContent('#paths-count');
  await page.fill('#search', '');
  t = Date.now();
  await page.click('th[data-key="narSize"] button');
  await page.waitForSelector('th[data-key="narSize"][aria-sort="ascending"]', { timeout: MINUTE });
  out.sortSeconds = (Date.now() - t) / 1000;
  await page.click('th[data-key="narSize"] button');
  await page.waitForSelector('th[data-key="narSize"][aria-sort="descending"]', { timeout: MINUTE });
  t = Date.now();
  await page.click('table.paths tbody tr.row:nth-child(2) a');
  await page.waitForSelector('#closure-count', { timeout: MINUTE });
  out.openPathSeconds = (Date.now() - t) / 1000;
  out.closurePaths = await page.textContent('#closure-count');
  await page.waitForSelector('#referrers-loading', { state: 'detached', timeout: MINUTE });
  out.jsHeapMiB = Math.round((await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0)) / 1048576);
  out.peakRendererMiB = Math.round(Math.max(...descendants(process.pid).filter(isChromium).map(peakKiB)) / 1024);
  if (errors.length) throw new Error(`errors in the page: ${errors.join('; ')}`);
} catch (e) {
  console.log(JSON.stringify(out));
  throw e;
} finally {
  await browser.close();
  await server.stop();
}
console.log(JSON.stringify(out));
