// verifyCache over every kind of source: the corpus caches verify clean through a directory, a
// path, a file: URL, HTTP (an in-process server and `nar-tool serve`) and a source of one's own.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, symlinkSync, renameSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as nar from '../index.js';
import { CACHES, CORPUS_KEY, STORE_PATHS, copyCache, serveDir, hashPart, listFiles, narFile, nativeBin, narinfoFile, setField, storePath } from '../tools/test-helpers.js';

const CORPUS_CACHES = readdirSync(CACHES).sort();
const TOTAL_BYTES = (cache) =>
  readdirSync(path.join(CACHES, cache, 'nar')).reduce((n, f) => n + statSync(path.join(CACHES, cache, 'nar', f)).size, 0);

test('the corpus caches verify clean from a directory source, with the corpus key where signed', async () => {
  for (const cache of CORPUS_CACHES) {
    const keys = cache === 'unsigned' ? [] : [CORPUS_KEY];
    const report = await nar.verifyCache(nar.dirSource(path.join(CACHES, cache)), { trustedKeys: keys });
    assert.deepEqual(report, { ok: true, paths: 9, checked_bytes: TOTAL_BYTES(cache), problems: [] }, cache);
    assert.equal(nar.exitCode(report), 0);
  }
});

test('the unsigned corpus cache with a trusted key: every path is untrusted (exit 2)', async () => {
  const report = await nar.verifyCache(path.join(CACHES, 'unsigned'), { trustedKeys: [CORPUS_KEY] });
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems.map((p) => [p.kind, p.path]), [...STORE_PATHS].sort().map((p) => ['untrusted', p]));
  assert.equal(nar.exitCode(report), 2);
});

test('verifyCache takes a path, a file: URL or a source; checkContents false reads no NAR', async () => {
  const dir = path.join(CACHES, 'zstd');
  const a = await nar.verifyCache(dir);
  const b = await nar.verifyCache(pathToFileURL(dir));
  const c = await nar.verifyCache(pathToFileURL(dir).href);
  assert.deepEqual(a, b);
  assert.deepEqual(a, c);
  assert.equal(a.ok, true);
  const quick = await nar.verifyCache(dir, { checkContents: false });
  assert.deepEqual(quick, { ok: true, paths: 9, checked_bytes: 0, problems: [] });
});

test('onProgress: once per path, done counting up to total', async () => {
  const seen = [];
  await nar.verifyCache(path.join(CACHES, 'xz'), { onProgress: (p) => seen.push({ ...p }) });
  assert.ok(seen.length >= 9, `${seen.length} progress calls`);
  const last = seen[seen.length - 1];
  assert.equal(last.total, 9);
  assert.equal(last.done, 9);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].done >= seen[i - 1].done);
  for (const p of seen) assert.equal(typeof p.path, 'string');
});

test('onProgress: a large NAR reports its bytes while it is read, not only once it is done', async () => {
  const c = copyCache('none');
  try {
    const lib = storePath('libdemo-1.0');
    const contents = Buffer.alloc(3 * 1024 * 1024 + 4321, 7);
    const str = (b) => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(b.length));
      return Buffer.concat([len, b, Buffer.alloc((8 - (b.length % 8)) % 8)]);
    };
    const big = Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents'].map((t) => str(Buffer.from(t))).concat([str(contents), str(Buffer.from(')'))]));
    const sha = nar.hash(big, 'sha256');
    writeFileSync(narFile(c.dir, lib), big);
    for (const [k, v] of [['FileHash', sha], ['FileSize', big.length], ['NarHash', sha], ['NarSize', big.length]]) setField(c.dir, lib, k, String(v));
    const seen = [];
    // One path at a time: `done` then counts exactly the paths before it (concurrency.test.js
    // checks the progress with several in flight).
    const report = await nar.verifyCache(c.dir, { jobs: 1, onProgress: (p) => seen.push({ ...p }) });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    const names = readdirSync(c.dir).filter((f) => f.endsWith('.narinfo')).sort();
    const at = names.indexOf(narinfoFile(lib));
    const during = seen.filter((p) => p.done === at && p.path === narinfoFile(lib));
    assert.equal(during.length, 3, JSON.stringify(seen));
    const before = at === 0 ? 0 : seen.find((p) => p.done === at).bytes;
    assert.deepEqual(during.map((p) => p.bytes - before), [1, 2, 3].map((m) => m * 1024 * 1024), 'each MiB (dirSource reads 1 MiB chunks)');
    assert.equal(seen.at(-1).bytes, report.checked_bytes);
  } finally {
    c.cleanup();
  }
});

test('an http(s) cache that gives no response: verifyCache rejects once, saying why', async () => {
  const server = await serveDir(path.join(CACHES, 'none'));
  const url = server.url;
  await server.close();
  await assert.rejects(nar.verifyCache(url), (e) => {
    assert.equal(e.message, `cannot reach ${url}: connection refused (ECONNREFUSED)`);
    return true;
  });
  // An HTTP error is a response: the verifier reports it (here: no nix-cache-info, no listing).
  const up = await serveDir(path.join(CACHES, 'none'));
  try {
    const report = await nar.verifyCache(`${up.url}missing/`);
    assert.deepEqual(report.problems.map((p) => p.kind), ['check-failed', 'bad-cache-info']);
  } finally {
    await up.close();
  }
});

test('sha256: Node\'s OpenSSL by default, the wasm\'s own with null, or the caller\'s; the same reports', async () => {
  const dir = path.join(CACHES, 'xz');
  let made = 0;
  let bytes = 0;
  const counting = () => {
    made++;
    const h = createHash('sha256');
    return { update: (b) => { bytes += b.length; h.update(b); }, digest: () => new Uint8Array(h.digest()) };
  };
  const byDefault = await nar.verifyCache(dir, { trustedKeys: [CORPUS_KEY] });
  const own = await nar.verifyCache(dir, { trustedKeys: [CORPUS_KEY], sha256: null });
  const theirs = await nar.verifyCache(dir, { trustedKeys: [CORPUS_KEY], sha256: counting });
  assert.deepEqual(own, byDefault);
  assert.deepEqual(theirs, byDefault);
  assert.equal(byDefault.ok, true);
  assert.ok(made >= 18, `${made} hashers: a file hash and a NAR hash per path`);
  assert.ok(bytes >= byDefault.checked_bytes, 'every byte of the files went through it');
  // A hasher that lies is believed: every NAR hash "mismatches".
  const lying = () => ({ update() {}, digest: () => new Uint8Array(32) });
  const lied = await nar.verifyCache(dir, { sha256: lying });
  assert.equal(lied.ok, false);
  assert.ok(lied.problems.every((p) => p.kind === 'file-hash-mismatch'), JSON.stringify(lied.problems[0]));
});

test('only: just the named narinfos are checked', async () => {
  const only = [narinfoFile(storePath('closure-top')), narinfoFile(storePath('single-exe'))];
  const report = await nar.verifyCache(path.join(CACHES, 'xz'), { only, trustedKeys: [CORPUS_KEY] });
  assert.equal(report.paths, 2);
});

test('dirSource: streams in chunks of at most 1 MiB, lists like DirStorage, stays inside the cache', async () => {
  const c = copyCache('none');
  try {
    const src = nar.dirSource(c.dir);
    const edge = path.relative(c.dir, narFile(c.dir, storePath('edge-cases')));
    const f = await src.openFile(edge);
    const sizes = [];
    for (let chunk; (chunk = await f.next()) !== null; ) sizes.push(chunk.length);
    assert.equal(sizes.reduce((a, b) => a + b, 0), statSync(path.join(c.dir, edge)).size);
    assert.ok(sizes.length >= 2 && sizes.every((s) => s <= 1 << 20), String(sizes));
    assert.equal(await f.next(), null);
    assert.equal(await src.fileSize(edge), statSync(path.join(c.dir, edge)).size);
    assert.equal(await src.readFile('nar/absent.nar'), null);
    assert.equal(await src.openFile('nar/absent.nar'), null);
    assert.equal(await src.fileSize('nar/absent.nar'), null);
    // Only regular files are read: anything else under a file's name is an error naming it.
    await assert.rejects(src.fileSize('nar'), { message: `${c.dir}/nar is not a regular file (found a directory); refusing to read it` });
    assert.deepEqual((await src.listNarinfos()).sort(), STORE_PATHS.map(narinfoFile).sort());
    assert.deepEqual((await src.listNarFiles()).sort(), listFiles(path.join(c.dir, 'nar')).map((n) => `nar/${n}`));
    for (const bad of ['../x', '/etc/passwd', 'nar/../../x', 'a//b', '', 'x\0y']) {
      await assert.rejects(src.readFile(bad), /is not a path inside the cache/, bad);
      await assert.rejects(src.openFile(bad), /is not a path inside the cache/, bad);
    }
    // A symlink out of the cache is refused; one inside is followed.
    writeFileSync(path.join(c.parent, 'outside'), 'secret');
    symlinkSync(path.join(c.parent, 'outside'), path.join(c.dir, 'nar', 'out-link'));
    await assert.rejects(src.readFile('nar/out-link'), { message: `${c.dir}/nar/out-link is a symlink or leads outside the cache; not followed` });
    symlinkSync(`../${edge}`, path.join(c.dir, 'nar', 'in-link.nar'));
    assert.equal(await src.fileSize('nar/in-link.nar'), statSync(path.join(c.dir, edge)).size);
    // Listed as DirStorage lists: a symlink only when it leads to a regular file inside, never a
    // directory.
    mkdirSync(path.join(c.dir, 'nar', 'subdir'));
    const listed = await src.listNarFiles();
    assert.ok(listed.includes('nar/in-link.nar') && !listed.includes('nar/out-link') && !listed.includes('nar/subdir'), String(listed));
    // Hidden files are not listed.
    writeFileSync(path.join(c.dir, '.hidden.narinfo'), 'x');
    writeFileSync(path.join(c.dir, 'nar', '.tmp'), 'x');
    assert.ok(!(await src.listNarinfos()).includes('.hidden.narinfo'));
    assert.ok(!(await src.listNarFiles()).includes('nar/.tmp'));
    const absent = path.join(c.parent, 'absent');
    assert.throws(() => nar.dirSource(absent), { message: `${absent}: No such file or directory (os error 2)` });
    assert.throws(() => nar.dirSource(path.join(c.parent, 'outside')), { message: `${path.join(c.parent, 'outside')}: Not a directory (os error 20)` });
  } finally {
    c.cleanup();
  }
});

test('a source of one\'s own (in memory); a throwing source gives check-failed', async () => {
  const dir = path.join(CACHES, 'xz');
  const files = new Map(listFiles(dir).map((f) => [f, new Uint8Array(readFileSync(path.join(dir, f)))]));
  const memory = {
    readFile: async (p) => files.get(p) ?? null,
    openFile: async (p) => {
      const bytes = files.get(p);
      if (!bytes) return null;
      let at = 0;
      return { next: async () => (at >= bytes.length ? null : bytes.subarray(at, (at += 1000))) };
    },
    listNarinfos: async () => [...files.keys()].filter((f) => f.endsWith('.narinfo')),
  };
  const report = await nar.verifyCache(memory, { trustedKeys: [CORPUS_KEY] });
  assert.deepEqual(report, { ok: true, paths: 9, checked_bytes: TOTAL_BYTES('xz'), problems: [] });

  const lib = storePath('libdemo-1.0');
  const url = nar.parseNarInfo(new TextDecoder().decode(files.get(narinfoFile(lib)))).url;
  const failing = {
    ...memory,
    openFile: async (p) => {
      if (p === url) throw new Error('disk on fire');
      return memory.openFile(p);
    },
  };
  const bad = await nar.verifyCache(failing, { trustedKeys: [CORPUS_KEY] });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.problems.map((p) => [p.kind, p.path]), [['check-failed', lib]]);
  assert.match(bad.problems[0].message, /disk on fire/);
  assert.equal(nar.exitCode(bad), 4);

  const unlistable = { ...memory, listNarinfos: async () => { throw new Error('no listing'); } };
  const r = await nar.verifyCache(unlistable);
  assert.deepEqual(r.problems.map((p) => [p.kind, p.path]), [['check-failed', '.']]);
  assert.match(r.problems[0].message, /no listing/);
});

test('httpSource: the corpus caches over HTTP (listing of nar-tool serve, explicit narinfos, roots)', async () => {
  for (const cache of ['xz', 'zstd', 'bzip2', 'none']) {
    const server = await serveDir(path.join(CACHES, cache), { listing: true });
    try {
      const expected = { ok: true, paths: 9, checked_bytes: TOTAL_BYTES(cache), problems: [] };
      assert.deepEqual(await nar.verifyCache(server.url, { trustedKeys: [CORPUS_KEY] }), expected, cache);
      assert.deepEqual(await nar.verifyCache(nar.httpSource(server.url), { trustedKeys: [CORPUS_KEY] }), expected);
    } finally {
      await server.close();
    }
  }
  // No listing: explicit narinfos (any form), or the closure of roots.
  const server = await serveDir(path.join(CACHES, 'xz'));
  try {
    await assert.rejects(nar.httpSource(server.url).listNarinfos(), /publishes no list of its narinfos/);
    // Byte ranges, from a server that ignores Range requests.
    const info = readFileSync(path.join(CACHES, 'xz', 'nix-cache-info'));
    assert.deepEqual(Buffer.from(await nar.httpSource(server.url).readRange('nix-cache-info', 3, 10)), info.subarray(3, 10));
    const top = storePath('closure-top');
    const some = await nar.verifyCache(server.url, { narinfos: [top, hashPart(storePath('single-exe')), narinfoFile(storePath('app-0.9'))] });
    assert.equal(some.paths, 3);
    const all = await nar.verifyCache(server.url, { narinfos: STORE_PATHS, trustedKeys: [CORPUS_KEY] });
    assert.deepEqual(all, { ok: true, paths: 9, checked_bytes: TOTAL_BYTES('xz'), problems: [] });
    server.requests.length = 0;
    const closure = await nar.verifyCache(server.url, { roots: [top], trustedKeys: [CORPUS_KEY] });
    const infos = STORE_PATHS.map((p) => nar.parseNarInfo(readFileSync(path.join(CACHES, 'xz', narinfoFile(p)), 'utf8')));
    assert.deepEqual(closure, { ok: true, paths: nar.closure(infos, [top]).length, checked_bytes: closure.checked_bytes, problems: [] });
    // Each narinfo fetched once.
    const gets = server.requests.filter((r) => r.startsWith('GET ') && r.endsWith('.narinfo'));
    assert.equal(gets.length, new Set(gets).size);
    await assert.rejects(
      nar.httpSource(server.url, { roots: ['/nix/store/00000000000000000000000000000000-absent'] }).listNarinfos(),
      /has no 00000000000000000000000000000000.narinfo/,
    );
  } finally {
    await server.close();
  }
});

test('httpSource: servers without HEAD or Content-Length; damage is found over HTTP too', async () => {
  const c = copyCache('xz');
  try {
    for (const opts of [{ head: false }, { contentLength: false }]) {
      const server = await serveDir(c.dir, { listing: true, ...opts });
      try {
        const r = await nar.verifyCache(server.url, { trustedKeys: [CORPUS_KEY], checkContents: false });
        assert.deepEqual(r.problems, [], JSON.stringify(opts));
      } finally {
        await server.close();
      }
    }
    const lib = storePath('libdemo-1.0');
    renameSync(narFile(c.dir, lib), path.join(c.parent, 'gone'));
    const server = await serveDir(c.dir, { listing: true });
    try {
      const r = await nar.verifyCache(server.url);
      assert.deepEqual(r.problems.map((p) => [p.kind, p.path]), [['missing-nar', lib]]);
      const viaDir = await nar.verifyCache(c.dir);
      assert.deepEqual(r, viaDir);
    } finally {
      await server.close();
    }
  } finally {
    c.cleanup();
  }
});

test('httpSource over `nar-tool serve` (its narinfo and nar-file listings)', async (t) => {
  const bin = nativeBin();
  if (!bin) return t.skip('no native nar-tool (cargo build)');
  const c = copyCache('zstd');
  mkdirSync(path.join(c.parent, 'empty-inspector'));
  writeFileSync(path.join(c.parent, 'empty-inspector', 'index.html'), ''); // serve wants an inspector's page
  const child = spawn(bin, ['serve', c.dir, '--listen', '127.0.0.1:0', '--quiet', '--inspector', path.join(c.parent, 'empty-inspector')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    const url = await new Promise((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
        const m = /on (http:\/\/[^\s]+)/.exec(err);
        if (m) resolve(`${m[1]}/`);
      });
      child.on('exit', (code) => reject(new Error(`nar-tool serve exited ${code}: ${err}`)));
    });
    writeFileSync(path.join(c.dir, 'nar', 'stray.nar.zst'), 'stray');
    const r = await nar.verifyCache(url, { trustedKeys: [CORPUS_KEY] });
    assert.deepEqual(r.problems.map((p) => [p.kind, p.path]), [['orphan-nar', 'nar/stray.nar.zst']]);
    assert.equal(r.ok, true);
    assert.equal(r.paths, 9);
    // Byte ranges, by Range requests.
    const src = nar.httpSource(url);
    const info = readFileSync(path.join(c.dir, 'nix-cache-info'));
    assert.deepEqual(Buffer.from(await src.readRange('nix-cache-info', 3, 10)), info.subarray(3, 10));
    assert.deepEqual(await src.readRange('nix-cache-info', 5, 5), new Uint8Array(0));
    assert.equal(await src.readRange('nar/absent.nar.zst', 0, 1), null);
  } finally {
    child.kill();
    c.cleanup();
  }
});
