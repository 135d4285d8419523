// verifyCache keeps several paths in flight (`jobs`): the report must be the one of one path at a
// time whatever order the reads end in, no more than `jobs` paths may be read at once, and every
// file opened is released (read to its end, or closed when the verifier stops early).

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import { CACHES, CORPUS_KEY, copyCache, narFile, setField, storePath } from '../tools/test-helpers.js';

/** A damaged copy of the xz corpus cache: several kinds of problem on different paths. */
function damaged() {
  const c = copyCache('xz');
  // The same size, one byte changed: the file's hash, then its decompression fail.
  const lib = narFile(c.dir, storePath('libdemo-1.0'));
  const bytes = readFileSync(lib);
  bytes[bytes.length >> 1] ^= 0x55;
  writeFileSync(lib, bytes);
  setField(c.dir, storePath('tool-2.3'), 'NarSize', '7');
  unlinkSync(narFile(c.dir, storePath('app-0.9')));
  setField(c.dir, storePath('single-file'), 'FileSize', '12');
  return c;
}

/** A deterministic pseudo-random number generator (xorshift), in [0, 1). */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/**
 * `source` with every call answered after a random delay (so calls end in any order), counting
 * the calls in flight at once and the streams opened and released.
 */
function slow(source, seed) {
  const random = rng(seed);
  const stats = { inFlight: 0, most: 0, opened: 0, released: 0 };
  const later = async (f) => {
    stats.inFlight += 1;
    stats.most = Math.max(stats.most, stats.inFlight);
    try {
      await new Promise((r) => setTimeout(r, Math.floor(random() * 4)));
      return await f();
    } finally {
      stats.inFlight -= 1;
    }
  };
  const wrapped = {
    readFile: (p) => later(() => source.readFile(p)),
    fileSize: (p) => later(() => source.fileSize(p)),
    listNarinfos: () => source.listNarinfos(),
    listNarFiles: () => source.listNarFiles(),
    async openFile(p) {
      const s = await later(() => source.openFile(p));
      if (s === null) return null;
      stats.opened += 1;
      let released = false;
      const release = () => {
        if (!released) stats.released += 1;
        released = true;
      };
      return {
        size: s.size,
        next: () => later(async () => {
          const chunk = await s.next();
          if (chunk === null) release();
          return chunk;
        }),
        async close() {
          release();
          await s.close();
        },
      };
    },
  };
  return { source: wrapped, stats };
}

test('jobs: the report of one path at a time, whatever order the reads end in; at most `jobs` reads at once', async () => {
  const c = damaged();
  try {
    const options = { trustedKeys: [CORPUS_KEY] };
    const expected = await nar.verifyCache(nar.dirSource(c.dir), { ...options, jobs: 1 });
    assert.deepEqual(
      expected.problems.map((p) => p.kind).sort(),
      ['bad-signature', 'file-hash-mismatch', 'file-size-mismatch', 'missing-nar', 'nar-size-mismatch'],
    );
    for (const [jobs, seed] of [[1, 1], [3, 2], [8, 3], [8, 4], [64, 5]]) {
      const { source, stats } = slow(nar.dirSource(c.dir), seed);
      const report = await nar.verifyCache(source, { ...options, jobs });
      assert.deepEqual(report, expected, `jobs ${jobs}, seed ${seed}`);
      assert.ok(stats.most <= jobs, `jobs ${jobs}: ${stats.most} calls in flight at once`);
      if (jobs > 1) assert.ok(stats.most > 1, `jobs ${jobs}: the paths were checked one at a time`);
      // Every stream was read to its end or closed (the FileSize mismatch stops before reading).
      assert.equal(stats.released, stats.opened, `jobs ${jobs}: ${stats.opened - stats.released} files left open`);
      assert.ok(stats.opened >= 7);
    }
  } finally {
    c.cleanup();
  }
});

test('jobs: the progress counts paths in order and bytes never go back', async () => {
  const c = damaged();
  try {
    const { source } = slow(nar.dirSource(c.dir), 9);
    const seen = [];
    const report = await nar.verifyCache(source, { jobs: 8, onProgress: (p) => seen.push({ ...p }) });
    const done = seen.filter((p, i) => i === 0 || p.done !== seen[i - 1].done).map((p) => p.done);
    assert.deepEqual(done, [...new Set(done)].sort((a, b) => a - b));
    assert.equal(seen.at(-1).done, 9);
    assert.equal(seen.at(-1).bytes, report.checked_bytes);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].bytes >= seen[i - 1].bytes);
  } finally {
    c.cleanup();
  }
});

test('jobs: a number from 1 to 1024', async () => {
  const dir = path.join(CACHES, 'zstd');
  for (const jobs of [0, -1, 1.5, 2000]) {
    await assert.rejects(nar.verifyCache(dir, { jobs }), /jobs: expected a whole number of paths from 1 to 1024/, String(jobs));
  }
});
