// Every view at 800 and at 1400 px wide: a screenshot of each (target/www-screenshots/layout-*),
// and checks that nothing is cut or pushed out of sight — no horizontal scrolling of the page or
// of the table, every column of the paths table inside the window, no text of the table, the
// header, the tree or the file list cut short (an ellipsis, or content wider than its box).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyCache, removeTemporary } from './serve.mjs';
import { PUBLIC_KEY, close, launch, openPage, saveKeys, serve, shot } from './browser.mjs';

const LIBDEMO = '5qk0fgkb9sfxmrbqjcs803wd2rjkaigy';
const TOP = 'z8w6vc8pyk06rr4fm1h99ciaifp1kqdp';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

/** What is cut or out of sight on the page now (empty when all is well). */
function overflows(page) {
  return page.evaluate(() => {
    const out = [];
    const vw = document.documentElement.clientWidth;
    const describe = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.split(' ').join('.')}` : ''} "${el.textContent.trim().slice(0, 40)}"`;
    if (document.documentElement.scrollWidth > vw) out.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${vw}`);
    const vt = document.querySelector('.vt');
    if (vt && vt.scrollWidth > vt.clientWidth + 1) out.push(`the table scrolls sideways: ${vt.scrollWidth} > ${vt.clientWidth}`);
    // Visible elements that reach past the window's right edge.
    for (const el of document.querySelectorAll('header *, main *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
      if (el.closest('pre, .treemap')) continue; // scroll or clip by design
      if (r.right > vw + 1) out.push(`${describe(el)} ends at ${Math.round(r.right)} > ${vw}`);
    }
    // Text cut short: cells, the bar, the tree, the file list.
    for (const el of document.querySelectorAll('table.paths th, table.paths td, .bar a, .bar span, .bar nav, #closure-tree summary, #closure-tree .leaf, table.files td, table.kv td, #paths-totals, .table-head > *')) {
      if (el.closest('tr.spacer')) continue;
      if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') {
        out.push(`${describe(el)} is cut: ${el.scrollWidth} > ${el.clientWidth}`);
      }
    }
    // Placeholders (the search box's) shown whole.
    const ctx = document.createElement('canvas').getContext('2d');
    for (const input of document.querySelectorAll('header input[placeholder]')) {
      const st = getComputedStyle(input);
      ctx.font = st.font;
      const room = input.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
      if (!input.value && ctx.measureText(input.placeholder).width > room) out.push(`the placeholder of ${describe(input)} is cut: ${Math.round(ctx.measureText(input.placeholder).width)} > ${room}`);
    }
    return out;
  });
}

async function check(page, view, width) {
  await page.waitForTimeout(150); // layout settled (the table renders on the next frame)
  await shot(page, `layout-${view}-${width}.png`);
  assert.deepEqual(await overflows(page), [], `${view} at ${width} px`);
}

for (const width of [800, 1400]) {
  test(`every view at ${width} px: nothing cut or out of sight`, async (t) => {
    const cache = copyCache('xz');
    // A damaged path, so that the verify view has problems to list.
    const narinfo = readFileSync(join(cache, `${LIBDEMO}.narinfo`), 'utf8');
    unlinkSync(join(cache, /^URL: (.*)$/m.exec(narinfo)[1]));
    writeFileSync(join(cache, 'nar/stray.nar.xz'), 'stray');
    const s = await serve(cache);
    const page = await openPage(t, s.url, { viewport: { width, height: 800 } });
    await saveKeys(page, PUBLIC_KEY);
    await page.goto(`${s.url}#/`);
    await page.locator('table.paths tr.row').first().waitFor();
    // Every column of the table is there, inside the window.
    const columns = await page.$$eval('table.paths thead th', (ths) => ths.map((th) => {
      const r = th.getBoundingClientRect();
      return { key: th.dataset.key, visible: r.width > 20 && r.right <= document.documentElement.clientWidth + 1 };
    }));
    assert.deepEqual(columns.map((c) => c.key), ['name', 'version', 'hash', 'narSize', 'fileSize', 'compression', 'sigs', 'refs']);
    assert.deepEqual(columns.filter((c) => !c.visible), [], 'columns out of sight');
    await check(page, 'paths', width);

    await page.goto(`${s.url}#/path/${TOP}`);
    await page.waitForSelector('#closure-tree');
    await check(page, 'path', width);
    await page.locator('#closure-treemap').scrollIntoViewIfNeeded();
    await check(page, 'treemap', width);

    await page.goto(`${s.url}#/path/${'l3x0p6waaizfa1gbn5zzzjdfdkry4czk'}/files/bin`);
    await page.waitForSelector('#file-list');
    await check(page, 'files', width);

    await page.goto(`${s.url}#/verify`);
    await page.click('#verify-all');
    await page.waitForSelector('#verify-summary', { timeout: 120000 });
    await check(page, 'verify', width);

    await page.goto(`${s.url}#/keys`);
    await page.waitForSelector('#keys-input');
    await check(page, 'keys', width);

    await page.goto(`${s.url}#/cache`);
    await page.waitForSelector('#nix-conf');
    await check(page, 'cache', width);

    await page.goto(`${s.url}#/open`);
    await page.waitForSelector('#cache-url');
    await check(page, 'open', width);
  });
}
