// serve under load, bounded in time: many concurrent keep-alive clients fetch every NAR of a
// cache in a loop; every body is checked (length and SHA-256), nothing may fail or be dropped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { load } from './load.mjs';
import { startServe, copyCache, removeTemporary } from './serve.mjs';

const SECONDS = Number(process.env.LOAD_SECONDS ?? 4);
const CLIENTS = Number(process.env.LOAD_CLIENTS ?? 64);

test(`${CLIENTS} concurrent clients for ${SECONDS} s: every byte of every NAR, nothing dropped`, async () => {
  const cache = copyCache('zstd');
  // Every client comes from this one address: its share of connections must hold them all.
  const share = String(Math.max(128, 2 * CLIENTS));
  const server = await startServe(cache, { threads: 8, args: ['--max-connections-per-client', share] });
  try {
    const r = await load({ url: server.root, cache, clients: CLIENTS, seconds: SECONDS });
    console.log(`# load: ${JSON.stringify(r)}`);
    assert.ok(r.requests > CLIENTS, `only ${r.requests} requests`);
    assert.equal(r.errors, 0, r.firstError);
    assert.equal(r.non200, 0, r.firstError);
    assert.equal(r.mismatches, 0, r.firstError);
  } finally {
    assert.equal(await server.stop(), 0, 'serve exits cleanly on Ctrl-C after the load');
    removeTemporary();
  }
});
