// Headless Chromium for the inspector's tests: one browser per test file, a fresh context (its
// own storage) per page, page errors failing the test, screenshots in target/www-screenshots/.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { corpus, repo, startServe } from './serve.mjs';

export const SHOTS = process.env.SCREENSHOT_DIR ?? join(repo, 'target/www-screenshots');
export const PUBLIC_KEY = readFileSync(join(corpus, 'keys/public'), 'utf8').trim();

let browser = null;
const servers = [];

export async function launch() {
  mkdirSync(SHOTS, { recursive: true });
  browser = await launchChromium();
}

/** Debian's Chromium, driven by playwright-core, on a fresh temporary profile of its own. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export async function close() {
  await browser?.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
}

/** `nar-tool serve` on `cache`, stopped by close(). */
export async function serve(cache, opts) {
  const s = await startServe(cache, opts);
  servers.push(s);
  return s;
}

/**
 * A fresh page (its own storage) at `url`, failing the test on any page error or console error
 * (but those `expected` matches: what the browser itself logs about a request a test makes fail).
 */
export async function openPage(t, url, { viewport = { width: 1366, height: 800 }, expected = null } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text()) && !expected?.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], 'errors in the page');
  });
  if (url) {
    await page.goto(url);
    await ready(page);
  }
  return page;
}

export async function ready(page) {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, name), fullPage: false });
}

export async function saveKeys(page, text) {
  await page.goto(new URL('#/keys', page.url()).href);
  await page.fill('#keys-input', text);
  await page.click('#keys-save');
  await page.waitForSelector('#keys-status span');
}
