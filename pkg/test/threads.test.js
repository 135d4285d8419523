// A cache on disk is verified by several threads (worker threads running the same wasm, sharing
// the paths): the report must be the one of a single thread, whatever the helpers do, and the
// helpers must really take part. (test/differential.test.js also runs every damaged cache shared.)

import test from 'node:test';
import assert from 'node:assert/strict';
import { unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import { CLI, CORPUS_KEY, run, syntheticCache, tempDir } from '../tools/test-helpers.js';

/** 400 paths (above the 256 from which paths are shared), some damaged. */
function cache() {
  const dir = syntheticCache(path.join(tempDir(), 'cache'), 400);
  for (const i of [3, 150, 399]) {
    const name = path.join(dir, `s${String(i).padStart(31, '0')}.narinfo`);
    if (i === 150) unlinkSync(name);
    else writeFileSync(name, 'StorePath: /nix/store/not-a-store-path\n');
  }
  return dir;
}

async function cli(dir, threads, hooks) {
  const env = { ...process.env, NAR_TOOL_TEST_SHARE: hooks };
  return run(process.execPath, [CLI, '--json', '--threads', String(threads), '--trusted-key', CORPUS_KEY, dir], { env });
}

test('nar-cache-verify --threads: the same report from one thread and from several', async () => {
  const dir = cache();
  const one = await cli(dir, 1, 'log');
  assert.equal(one.code, 3, one.stderr);
  assert.match(JSON.parse(one.stdout).problems[0].kind, /./);
  assert.doesNotMatch(one.stderr, /shared:/, 'one thread shares nothing');
  for (const threads of [2, 3]) {
    const shared = await cli(dir, threads, 'log');
    assert.equal(shared.stdout, one.stdout, `${threads} threads`);
    assert.equal(shared.code, one.code);
    const batches = Number(/shared: (\d+) batches from (\d+) helpers/.exec(shared.stderr)?.[1]);
    assert.ok(batches > 0, `${threads} threads: the helpers sent checks: ${shared.stderr}`);
  }
});

test('helpers that die after claiming paths: the leader checks those itself', async () => {
  const dir = cache();
  const one = await cli(dir, 1, '');
  const died = await cli(dir, 3, 'die,log');
  assert.equal(died.stdout, one.stdout);
  assert.equal(died.code, one.code);
  assert.match(died.stderr, /shared: 0 batches from 2 helpers/);
});

test('verifyCache({ threads }): checked, and shared only for a cache on disk', async () => {
  const dir = cache();
  const one = await nar.verifyCache(dir, { threads: 1, trustedKeys: [CORPUS_KEY] });
  const shared = await nar.verifyCache(dir, { threads: 2, trustedKeys: [CORPUS_KEY] });
  assert.deepEqual(shared, one);
  const viaSource = await nar.verifyCache(nar.dirSource(dir), { threads: 2, trustedKeys: [CORPUS_KEY] });
  assert.deepEqual(viaSource, one);
  for (const bad of [0, 1.5, 65, '2']) {
    await assert.rejects(nar.verifyCache(dir, { threads: bad }), /threads: expected a whole number of threads from 1 to 64/);
  }
  const usage = await run(process.execPath, [CLI, '--threads', '0', dir]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /invalid value '0' for '--threads <N>'/);
});
