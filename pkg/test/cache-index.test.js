// CacheIndex (the lookup index, nar-tool-index/) against the narinfos it was made from: an index
// written by the native `nar-tool index` must answer lookups, references, closures, referrers and
// searches exactly as the narinfos do (read whole, through CacheGraph), from a directory and
// over HTTP, and refuse damaged shards and manifests by name.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import { CACHES, copyCache, nativeBin, run, serveDir, tempDir } from '../tools/test-helpers.js';

const bin = nativeBin();
const skip = bin ? false : 'the native nar-tool is not built (NAR_TOOL_BIN)';

async function index(dir) {
  const r = await run(bin, ['index', dir]);
  assert.equal(r.code, 0, r.stderr);
}

function narinfos(dir) {
  return readdirSync(dir).filter((f) => f.endsWith('.narinfo')).sort()
    .map((f) => ({ file: f, info: nar.parseNarInfo(readFileSync(path.join(dir, f), 'utf8')) }));
}

const ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';
/** A valid hash part for `i`, in the order of `i`. */
const hashOf = (i) => {
  let s = '';
  for (let n = i; s.length < 32; n = Math.floor(n / 32)) s = ALPHABET[n % 32] + s;
  return s;
};

/**
 * `n` narinfos (no NARs: the index reads narinfos only), each referring to a few earlier
 * paths, every third to itself, every 13th to a path that has no narinfo.
 */
function referringCache(dir, n) {
  mkdirSync(dir, { recursive: true });
  cpSync(path.join(CACHES, 'zstd', 'nix-cache-info'), path.join(dir, 'nix-cache-info'));
  const base = (i) => `${hashOf(i * 7919 % 1000003)}-pkg-${i}-${i % 4}.0`;
  let seed = 12345;
  const rnd = (k) => (seed = (seed * 1103515245 + 12345) % 2147483648) % Math.max(1, k);
  for (let i = 0; i < n; i++) {
    const refs = new Set();
    for (let k = rnd(4); k > 0 && i > 0; k--) refs.add(base(rnd(i)));
    if (i % 3 === 0) refs.add(base(i));
    if (i % 13 === 0) refs.add(`${hashOf(999999 - i)}-gone`);
    writeFileSync(path.join(dir, `${base(i).slice(0, 32)}.narinfo`), [
      `StorePath: /nix/store/${base(i)}`, `URL: nar/${base(i).slice(0, 32)}.nar`, 'Compression: none',
      `NarHash: sha256:${'1'.repeat(52)}`, `NarSize: ${1000 + i * 37}`, `References: ${[...refs].sort().join(' ')}`, '',
    ].join('\n'));
  }
  return dir;
}

/** Everything the index says must equal what the narinfos say. */
async function agrees(idx, dir) {
  const all = narinfos(dir);
  const graph = new nar.CacheGraph(all.map((x) => x.info));
  assert.equal(idx.paths, all.length);
  for (const { info } of all) {
    const row = await idx.lookup(info.storePath);
    assert.equal(row.storePath, info.storePath);
    assert.equal(row.present, true);
    assert.equal(row.narSize, info.narSize);
    assert.equal(row.fileSize, info.fileSize ?? null);
    assert.equal(row.refCount, info.references.length);
    assert.deepEqual(await idx.references(info.storePath), info.references.map((r) => `/nix/store/${r}`).sort());
    const g = await idx.closureGraph(info.storePath);
    assert.deepEqual(g.closureWithMissing([info.storePath]), graph.closureWithMissing([info.storePath]), info.storePath);
    assert.deepEqual(g.closureTree(info.storePath), graph.closureTree(info.storePath));
    g.free();
  }
  for (const { info } of all.filter((_, i) => i % 5 === 0)) {
    assert.deepEqual(await idx.referrers(info.storePath), graph.referrers(info.storePath), info.storePath);
  }
  assert.deepEqual(await idx.narinfoNames(), all.map((x) => x.file));
  graph.free();
}

test('an index of the corpus cache answers as its narinfos do', { skip }, async () => {
  const c = copyCache('zstd');
  try {
    assert.equal(await nar.CacheIndex.open(c.dir), null, 'no index yet');
    await index(c.dir);
    const idx = await nar.CacheIndex.open(c.dir);
    assert.equal(idx.storeDir, '/nix/store');
    assert.equal(idx.shardCount, 1);
    await agrees(idx, c.dir);
    assert.equal(await idx.lookup('00000000000000000000000000000000'), null);
    idx.free();
  } finally {
    c.cleanup();
  }
});

test('a multi-shard index loads only the shards a question needs, and answers as the narinfos do', { skip }, async () => {
  const parent = tempDir();
  try {
    const dir = referringCache(path.join(parent, 'cache'), 1300);
    await index(dir);
    const idx = await nar.CacheIndex.open(dir);
    assert.equal(idx.shardCount, 3);
    assert.equal(idx.loadedShards, 0);
    const last = narinfos(dir).at(-1).info;
    assert.equal((await idx.lookup(last.storePath)).storePath, last.storePath);
    assert.equal(idx.loadedShards, 1, 'a lookup reads one shard');
    assert.equal(idx.complete, false);
    assert.throws(() => idx.narinfoNamesLoaded(), /not loaded/);
    await agrees(idx, dir);
    assert.equal(idx.complete, true);

    // The table: a search in the order asked for, with its totals.
    const all = narinfos(dir).map((x) => x.info);
    const want = all.filter((i) => i.storePath.includes('-2.0')).sort((a, b) => b.narSize - a.narSize);
    assert.equal(idx.query('-2.0', 'narSize', true), want.length);
    assert.deepEqual(idx.rows(0, 1e6).map((r) => r.storePath), want.map((i) => i.storePath));
    assert.deepEqual(idx.viewTotals(), { count: want.length, narSize: want.reduce((n, i) => n + i.narSize, 0), fileSize: 0 });
    assert.equal(idx.query('', 'name', false), all.length);
    assert.deepEqual(idx.rows(5, 2).map((r) => r.id).length, 2);
    assert.equal(idx.totals().count, all.length);
    assert.throws(() => idx.query('', 'colour', false), /sort key/);
    idx.free();
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('over HTTP the index reads the same, a shard at a time', { skip }, async () => {
  const c = copyCache('zstd');
  const server = await serveDir(c.dir);
  try {
    await index(c.dir);
    const idx = await nar.CacheIndex.open(server.url);
    await agrees(idx, c.dir);
    const shardRequests = server.requests.filter((r) => r.includes('nar-tool-index/') && !r.endsWith('index.json'));
    assert.equal(shardRequests.length, 1, 'each shard is fetched once');
    idx.free();
  } finally {
    await server.close();
    c.cleanup();
  }
});

test('a damaged index is refused by name', { skip }, async () => {
  const parent = tempDir();
  try {
    const dir = referringCache(path.join(parent, 'cache'), 600);
    await index(dir);
    const manifestFile = path.join(dir, 'nar-tool-index/index.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
    const [a, b] = manifest.shards.map((s) => path.join(dir, 'nar-tool-index', s.name));
    // A shard swapped for another: its bytes are not what the manifest names.
    const saved = readFileSync(a);
    cpSync(b, a);
    const idx = await nar.CacheIndex.open(dir);
    await assert.rejects(idx.loadAll(), new RegExp(`index shard ${manifest.shards[0].name}`));
    // A shard gone.
    rmSync(a);
    const again = await nar.CacheIndex.open(dir);
    await assert.rejects(again.loadAll(), /missing from the cache/);
    writeFileSync(a, saved);
    await again.loadAll();
    assert.equal(again.complete, true, 'a failed shard is asked for again');
    // Manifests that are not one.
    for (const text of ['{}', 'not json', JSON.stringify({ ...manifest, entries: manifest.entries + 1 })]) {
      writeFileSync(manifestFile, text);
      await assert.rejects(nar.CacheIndex.open(dir), /manifest/);
    }
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
