// Reports that stream: verifyCacheReport keeps the report in wasm memory and renders it piece by
// piece, byte for byte what renderReport gives, so nar-cache-verify writes a report of any number
// of problems with a JS heap that does not grow with them.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as nar from '../index.js';
import { CACHES, CLI, CORPUS_KEY, copyCache, nativeBin, narFile, setField, storePath, tempDir } from '../tools/test-helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/**
 * A cache of `n` narinfos whose NAR files are all missing and that each reference `refs` store
 * paths without a narinfo: n × (refs + 1) problems.
 */
function problemCache(dir, n, refs) {
  mkdirSync(path.join(dir, 'nar'), { recursive: true });
  cpSync(path.join(CACHES, 'xz', 'nix-cache-info'), path.join(dir, 'nix-cache-info'));
  const hash = (c, i) => `${c}${String(i).padStart(31, '0')}`;
  for (let i = 0; i < n; i++) {
    const references = Array.from({ length: refs }, (_, j) => `${hash('m', i * refs + j)}-gone-${j}`).join(' ');
    const text = [
      `StorePath: /nix/store/${hash('s', i)}-pkg-${i}`, `URL: nar/${hash('s', i)}.nar.xz`, 'Compression: xz',
      'FileHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', 'FileSize: 100',
      'NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', 'NarSize: 120',
      `References: ${references}`, '',
    ].join('\n');
    writeFileSync(path.join(dir, `${hash('s', i)}.narinfo`), text);
  }
  return dir;
}

test('verifyCacheReport: the verdict, and every rendering in pieces that join to renderReport\'s', async () => {
  const c = copyCache('xz');
  try {
    writeFileSync(narFile(c.dir, storePath('libdemo-1.0')), 'damaged');
    setField(c.dir, storePath('tool-2.3'), 'Sig', 'cache-1:bogus');
    const options = { trustedKeys: [CORPUS_KEY] };
    const plain = await nar.verifyCache(c.dir, options);
    const report = await nar.verifyCacheReport(c.dir, options);
    try {
      assert.deepEqual(report.toJSON(), plain);
      assert.equal(report.ok, false);
      assert.equal(report.paths, 9);
      assert.equal(report.checkedBytes, plain.checked_bytes);
      assert.equal(report.problemCount, plain.problems.length);
      assert.equal(report.exitCode(), nar.exitCode(plain));
      const junit = { paths: ['a', storePath('tool-2.3')], seconds: 2, timestamp: 3 };
      for (const format of ['text', 'summary', 'json', 'github', 'github-summary', 'junit']) {
        const pieces = [...report.render(c.dir, format, junit)];
        assert.equal(pieces.join(''), nar.renderReport(plain, c.dir, format, junit), format);
      }
      assert.throws(() => [...report.render(c.dir, 'yaml')], /unknown report format "yaml"/);
    } finally {
      report.free();
    }
    assert.throws(() => report.ok, /freed/);
  } finally {
    c.cleanup();
  }
});

test('a report of 60 000 problems: pieces of about 64 KiB, and the JS heap does not hold them', async () => {
  const dir = problemCache(path.join(tempDir(), 'cache'), 2000, 29);
  const report = await nar.verifyCacheReport(dir);
  assert.equal(report.problemCount, 60000);
  gc();
  const before = process.memoryUsage().heapUsed;
  let most = 0;
  let bytes = 0;
  let pieces = 0;
  for (const piece of report.render(dir, 'json')) {
    bytes += piece.length;
    pieces += 1;
    assert.ok(piece.length < 80 * 1024, `a piece of ${piece.length} bytes`);
    if (pieces % 20 === 0) {
      gc();
      most = Math.max(most, process.memoryUsage().heapUsed - before);
    }
  }
  assert.ok(bytes > 15e6, `${bytes} bytes of JSON`);
  assert.ok(pieces > 200, `${pieces} pieces`);
  // What the JS heap holds while the report is written: a piece or so, not the report.
  assert.ok(most < 4e6, `the JS heap grew by ${most} bytes while the report was written`);
  // The same report as objects does hold them (the measure can tell).
  const plain = report.toJSON();
  gc();
  assert.ok(process.memoryUsage().heapUsed - before > 4 * 4e6, 'the report as objects is small?');
  assert.equal(plain.problems.length, 60000);
  report.free();
});

test('nar-cache-verify writes a report of 120 000 problems within a 16 MB JS heap (the report as objects and one string needs more), as nar-tool verify writes it', () => {
  const dir = problemCache(path.join(tempDir(), 'cache'), 4000, 29);
  const bin = nativeBin();
  for (const args of [[], ['--json']]) {
    const r = spawnSync(process.execPath, ['--max-old-space-size=16', CLI, ...args, dir], { maxBuffer: 1 << 30 });
    assert.equal(r.status, 1, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr.toString().slice(0, 2000)}`);
    assert.ok(r.stdout.length > 15e6, `${r.stdout.length} bytes`);
    if (bin) {
      const n = spawnSync(bin, ['verify', ...args, dir], { maxBuffer: 1 << 30 });
      assert.equal(n.status, 1);
      assert.ok(r.stdout.equals(n.stdout), `${args}: nar-cache-verify's report differs from nar-tool verify's`);
    }
  }
});
