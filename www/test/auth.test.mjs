// The inspector and `nar-tool serve --auth`, in headless Chromium: the protected cache asks for
// credentials with the page's own form (no browser prompt: the page says it is a script), a
// wrong secret is refused, the right one opens the cache; the credentials are kept for the
// session only (sessionStorage, not localStorage) and a new session asks again.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { close, launch, openPage, serve, shot } from './browser.mjs';
import { copyCache, narToolBin, tempDir, removeTemporary } from './serve.mjs';

before(launch);
after(async () => {
  await close();
  removeTemporary();
});

test('a protected cache opens after the login form, for this session only', async (t) => {
  const auth = join(tempDir(), 'auth');
  execFileSync(narToolBin(), ['auth', 'add', auth, 'alice'], { input: 'open sesame\n' });
  const s = await serve(copyCache('xz'), { args: ['--auth', auth] });
  // The browser logs each 401 it gets as a failed resource load: expected here.
  const page = await openPage(t, s.url, { expected: /401/ });
  await page.waitForSelector('#login');
  await shot(page, 'auth-login.png');
  assert.equal(await page.locator('table.paths tr.row').count(), 0, 'nothing of the cache shown before');
  await page.fill('#login-user', 'alice');
  await page.fill('#login-secret', 'wrong');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelector('#open-error')?.textContent.includes('refused'));
  await page.waitForSelector('#login');
  await page.fill('#login-user', 'alice');
  await page.fill('#login-secret', 'open sesame');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 9);
  await shot(page, 'auth-opened.png');
  const stored = await page.evaluate(() => ({ session: Object.keys(sessionStorage), local: Object.keys(localStorage) }));
  assert.ok(stored.session.some((k) => k.startsWith('nar-tool-auth:')), JSON.stringify(stored));
  assert.ok(!stored.local.some((k) => k.startsWith('nar-tool-auth:')), JSON.stringify(stored));
  // A reload in the same session opens it at once.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('table.paths tr.row').length === 9);
  // A new session (a fresh context) asks again.
  const other = await openPage(t, s.url, { expected: /401/ });
  await other.waitForSelector('#login');
});
