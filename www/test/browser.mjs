// Headless Chromium for the tests: Debian's, driven by playwright-core, on a fresh temporary
// profile of its own.

import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Resolves once the inspector has loaded its wasm and its cache. */
export async function ready(page) {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
}
