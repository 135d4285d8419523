// Native vs wasm: each damaged cache (the damage table of tests/it/verify.rs, and a few more) is
// verified by the native `nar-tool verify` and by `nar-cache-verify` (the wasm build, through
// dirSource) over the same files; their JSON reports, text outputs and exit codes must be
// identical, byte for byte (decoder error texts included). Each damage is also checked to give
// the problems it is meant to give, as in tests/it/verify.rs.

import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import {
  CLI, CORPUS_KEY, copyCache, corpusNar, field, hashPart, narFile, narinfoFile, nativeBin, pseudoRandom, removeField, run,
  setField, storePath, baseName, compress, writeNarinfoLines, narinfoLines, generateSecretKey,
} from '../tools/test-helpers.js';

const LIBDEMO = storePath('libdemo-1.0');
const TOP = storePath('closure-top');
const EXE = storePath('single-exe');
const FILE = storePath('single-file');
const EDGE = storePath('edge-cases');
const ADDED = storePath('added');
const SYMLINK = storePath('bare-symlink');
const OTHER_SECRET = generateSecretKey('other-1').secret;

const bin = nativeBin();

// ---- damage helpers

function flipMiddleByte(f) {
  const bytes = readFileSync(f);
  bytes[bytes.length >> 1] ^= 0x20;
  writeFileSync(f, bytes);
}

/** Puts `bytes` in place of a path's NAR file and makes FileHash and FileSize match (unsigned). */
function replaceNarFile(dir, p, bytes) {
  writeFileSync(narFile(dir, p), bytes);
  setField(dir, p, 'FileHash', nar.hash(bytes, 'sha256'));
  setField(dir, p, 'FileSize', String(bytes.length));
}

function narStr(s) {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  const out = Buffer.alloc(8 + Math.ceil(b.length / 8) * 8);
  out.writeBigUInt64LE(BigInt(b.length));
  b.copy(out, 8);
  return out;
}
const tokens = (...ts) => Buffer.concat(ts.map(narStr));
const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

/** Compresses what a generator yields, streamed through the system's compressor. */
function compressStream(method, chunks) {
  const cmd = { zstd: ['zstd', ['-c', '-q', '-3']], xz: ['xz', ['-c', '-T1', '-0']] }[method];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd[1], { stdio: ['pipe', 'pipe', 'inherit'] });
    const out = [];
    child.stdout.on('data', (d) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd[0]} exited ${code}`))));
    (async () => {
      for (const chunk of chunks) {
        if (!child.stdin.write(chunk)) await new Promise((r) => child.stdin.once('drain', r));
      }
      child.stdin.end();
    })().catch(reject);
  });
}

function* zeros(n, step = 1 << 20) {
  const block = Buffer.alloc(step);
  for (let left = n; left > 0; left -= step) yield left >= step ? block : block.subarray(0, left);
}

const BOMB = 200_000_000;
const zstdBomb = () => compressStream('zstd', zeros(BOMB));
const zstdNarBomb = () =>
  compressStream('zstd', (function* () {
    yield Buffer.concat([tokens('nix-archive-1', '(', 'type', 'regular', 'contents'), u64(BOMB)]);
    yield* zeros(BOMB);
    yield tokens(')');
  })());
const zstdDirectoryBomb = (files, each) =>
  compressStream('zstd', (function* () {
    yield tokens('nix-archive-1', '(', 'type', 'directory');
    for (let i = 0; i < files; i++) {
      yield Buffer.concat([tokens('entry', '(', 'name', `f${String(i).padStart(6, '0')}`, 'node', '(', 'type', 'regular', 'contents'), u64(each)]);
      yield* zeros(Math.ceil(each / 8) * 8);
      yield tokens(')', ')');
    }
    yield tokens(')');
  })());

/** The corpus NAR with the first byte of its first file's contents changed: same size, other hash. */
function narWithOtherContents(p) {
  const bytes = Buffer.from(corpusNar(p));
  const at = bytes.indexOf('contents') + 8 + 8;
  bytes[at] ^= 0x01;
  return bytes;
}

function corruptMidway(bytes) {
  const f = Buffer.from(bytes);
  const mid = f.length >> 1;
  for (let i = mid; i < mid + 64; i++) f[i] = ~f[i] & 0xff;
  return f;
}

function urlOutside(c, p, url, target) {
  const from = narFile(c.dir, p);
  const to = path.join(c.dir, target);
  mkdirSync(path.dirname(to), { recursive: true });
  renameSync(from, to);
  setField(c.dir, p, 'URL', url);
}

// ---- the table: [name, cache, damage, expected (kind, path) pairs, exit, options]
// (options: key: false, verify without the corpus key; args, more arguments; expectKinds: false,
// the problems are not checked; sortExpected; report: false, refused before verifying)

const info = (p) => narinfoFile(p);
const cases = [
  ['nar-deleted', 'xz', (c) => unlinkSync(narFile(c.dir, LIBDEMO)), [['missing-nar', LIBDEMO]], 1],
  ['nar-truncated', 'xz', (c) => truncateSync(narFile(c.dir, LIBDEMO), statSync(narFile(c.dir, LIBDEMO)).size >> 1), [['file-size-mismatch', LIBDEMO]], 1],
  ['nar-byte-flipped', 'xz', (c) => flipMiddleByte(narFile(c.dir, LIBDEMO)), [['file-hash-mismatch', LIBDEMO]], 1],
  ['nar-byte-flipped-uncompressed', 'none', (c) => flipMiddleByte(narFile(c.dir, EDGE)), [['file-hash-mismatch', EDGE]], 1],
  ['nar-is-a-directory', 'xz', (c) => { unlinkSync(narFile(c.dir, LIBDEMO)); mkdirSync(narFile(c.dir, LIBDEMO)); }, [['check-failed', LIBDEMO]], 4],
  ['references-edited-after-signing', 'xz', (c) => setField(c.dir, TOP, 'References', field(c.dir, TOP, 'References').split(' ').filter((r) => r !== baseName(EXE)).join(' ')), [['bad-signature', TOP]], 2],
  ['deriver-edited', 'xz', (c) => setField(c.dir, TOP, 'Deriver', '00000000000000000000000000000000-evil.drv'), [], 0],
  ['signature-removed', 'xz', (c) => removeField(c.dir, TOP, 'Sig'), [['untrusted', TOP]], 2],
  ['signature-removed-content-addressed', 'xz', (c) => removeField(c.dir, ADDED, 'Sig'), [['untrusted', ADDED]], 2],
  ['signed-by-another-key', 'xz', (c) => {
    const i = nar.parseNarInfo(readFileSync(path.join(c.dir, info(TOP)), 'utf8'));
    setField(c.dir, TOP, 'Sig', nar.signNarInfo({ ...i, sigs: [] }, OTHER_SECRET).sigs[0]);
  }, [['untrusted', TOP]], 2],
  ['signature-forged', 'xz', (c) => setField(c.dir, TOP, 'Sig', `corpus-public-1:${'A'.repeat(86)}==`), [['bad-signature', TOP]], 2],
  ['signature-malformed', 'xz', (c) => setField(c.dir, TOP, 'Sig', 'corpus-public-1:not base64!'), [['bad-signature', TOP]], 2, { expectKinds: false }],
  ['narinfo-missing-field', 'xz', (c) => removeField(c.dir, TOP, 'NarHash'), [['malformed-narinfo', info(TOP)]], 1],
  ['narinfo-missing-field-referenced', 'xz', (c) => removeField(c.dir, EXE, 'NarSize'), [['malformed-narinfo', info(EXE)]], 1],
  ['narinfo-garbage', 'xz', (c) => {
    writeFileSync(path.join(c.dir, info(TOP)), Buffer.concat([Buffer.from('\x7fELF\x02\x01\x01 garbage\nStorePath\n', 'latin1'), pseudoRandom(300, 7)]));
  }, [['orphan-nar', 'nar/0c8l40xc20lnqn6q0gags68napknnplfvr83gbpfg3iw3xpz8is1.nar.xz'], ['malformed-narinfo', info(TOP)]], 1],
  ['narinfo-not-utf8', 'xz', (c) => {
    const text = readFileSync(path.join(c.dir, info(TOP)));
    writeFileSync(path.join(c.dir, info(TOP)), Buffer.concat([text, Buffer.from([0x53, 0x79, 0x73, 0x74, 0x65, 0x6d, 0x3a, 0x20, 0xff, 0xfe, 0x0a])]));
  }, [['malformed-narinfo', info(TOP)]], 1],
  ['narinfo-over-1-MiB', 'xz', (c) => {
    const text = readFileSync(path.join(c.dir, info(TOP)), 'utf8');
    writeFileSync(path.join(c.dir, info(TOP)), text + `X-Padding: ${'x'.repeat(1 << 20)}\n`);
  }, [['orphan-nar', 'nar/0c8l40xc20lnqn6q0gags68napknnplfvr83gbpfg3iw3xpz8is1.nar.xz'], ['malformed-narinfo', info(TOP)]], 1],
  ['narinfo-bogus-name', 'xz', (c) => writeFileSync(path.join(c.dir, 'bogus.narinfo'), readFileSync(path.join(c.dir, info(TOP)))), [['malformed-narinfo', 'bogus.narinfo']], 1],
  ['narinfo-renamed', 'xz', (c) => renameSync(path.join(c.dir, info(TOP)), path.join(c.dir, 'ffffffffffffffffffffffffffffffff.narinfo')), [['hash-part-mismatch', TOP]], 1],
  // Directories are never listed (src/cache/storage/mod.rs): a narinfo's name on one is not seen.
  ['narinfo-is-a-directory', 'xz', (c) => mkdirSync(path.join(c.dir, '00000000000000000000000000000000.narinfo')), [], 0],
  ['url-parent-parent', 'xz', (c) => urlOutside(c, FILE, '../../etc/passwd', '../../etc/passwd'), [['url-outside-cache', FILE]], 1],
  ['url-absolute', 'xz', (c) => urlOutside(c, FILE, '/etc/passwd', 'etc/passwd'), [['url-outside-cache', FILE]], 1],
  ['url-http', 'xz', (c) => urlOutside(c, FILE, 'http://x/y', 'http:/x/y'), [['url-outside-cache', FILE]], 1],
  ['url-nar-parent-parent', 'xz', (c) => urlOutside(c, FILE, 'nar/../../x', 'nar/../../x'), [['url-outside-cache', FILE]], 1],
  ['reference-removed', 'xz', (c) => {
    unlinkSync(narFile(c.dir, EXE));
    unlinkSync(path.join(c.dir, info(EXE)));
    unlinkSync(path.join(c.dir, `${hashPart(EXE)}.ls`));
  }, [['missing-reference', TOP]], 1],
  ['stray-nar', 'xz', (c) => writeFileSync(path.join(c.dir, 'nar/stray.nar.xz'), 'stray'), [['orphan-nar', 'nar/stray.nar.xz']], 0],
  ['stray-directory-in-nar', 'xz', (c) => mkdirSync(path.join(c.dir, 'nar/subdir')), [], 0],
  ['nar-dir-missing', 'xz', (c) => rmSync(path.join(c.dir, 'nar'), { recursive: true }), null, 1, { expectKinds: false }],
  ['nar-dir-is-a-file', 'none', (c) => { rmSync(path.join(c.dir, 'nar'), { recursive: true }); writeFileSync(path.join(c.dir, 'nar'), 'x'); }, null, null, { expectKinds: false }],
  ['cache-info-missing', 'xz', (c) => unlinkSync(path.join(c.dir, 'nix-cache-info')), [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-info-garbage', 'xz', (c) => writeFileSync(path.join(c.dir, 'nix-cache-info'), '\x7fELF garbage\n'), [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-info-not-utf8', 'xz', (c) => writeFileSync(path.join(c.dir, 'nix-cache-info'), Buffer.from([0xff, 0xfe, 0x0a])), [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-info-other-store', 'xz', (c) => writeFileSync(path.join(c.dir, 'nix-cache-info'), 'StoreDir: /other/store\n'), [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-info-is-a-directory', 'xz', (c) => { unlinkSync(path.join(c.dir, 'nix-cache-info')); mkdirSync(path.join(c.dir, 'nix-cache-info')); }, [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-info-over-64-KiB', 'xz', (c) => writeFileSync(path.join(c.dir, 'nix-cache-info'), `StoreDir: /nix/store\n${'X: y\n'.repeat(20000)}`), [['bad-cache-info', 'nix-cache-info']], 1],
  ['nar-other-contents-same-size', 'xz', (c) => replaceNarFile(c.dir, FILE, compress('xz', narWithOtherContents(FILE))), [['nar-hash-mismatch', FILE]], 1],
  ['nar-longer', 'xz', (c) => replaceNarFile(c.dir, FILE, compress('xz', corpusNar(EXE))), [['nar-size-mismatch', FILE]], 1],
  ['nar-shorter', 'xz', (c) => replaceNarFile(c.dir, TOP, compress('xz', corpusNar(SYMLINK))), [['nar-size-mismatch', TOP]], 1],
  ['zstd-labelled-xz', 'xz', (c) => replaceNarFile(c.dir, LIBDEMO, compress('zstd', corpusNar(LIBDEMO))), [['malformed-nar', LIBDEMO]], 1],
  ['xz-then-garbage', 'xz', (c) => replaceNarFile(c.dir, FILE, Buffer.concat([compress('xz', corpusNar(FILE)), pseudoRandom(100, 3)])), [['malformed-nar', FILE]], 1],
  ['not-a-nar', 'xz', (c) => replaceNarFile(c.dir, FILE, compress('xz', Buffer.from('hello, this is not a NAR\n'.repeat(20)))), [['malformed-nar', FILE]], 1],
  ['nar-truncated-inside-stream', 'zstd', (c) => { const n = corpusNar(LIBDEMO); replaceNarFile(c.dir, LIBDEMO, compress('zstd', n.subarray(0, n.length >> 1))); }, [['malformed-nar', LIBDEMO]], 1],
  ['nar-trailing-zeros', 'none', (c) => replaceNarFile(c.dir, TOP, Buffer.concat([corpusNar(TOP), Buffer.alloc(8)])), [['nar-size-mismatch', TOP]], 1],
  ['zstd-bomb-zeros', 'zstd', async (c) => replaceNarFile(c.dir, FILE, await zstdBomb()), [['malformed-nar', FILE]], 1],
  ['zstd-bomb-valid-nar', 'zstd', async (c) => replaceNarFile(c.dir, FILE, await zstdNarBomb()), [['malformed-nar', FILE]], 1],
  ['zstd-bomb-directory', 'zstd', async (c) => replaceNarFile(c.dir, LIBDEMO, await zstdDirectoryBomb(1000, 200_000)), [['nar-size-mismatch', LIBDEMO]], 1],
  ['filehash-edited', 'xz', (c) => setField(c.dir, TOP, 'FileHash', field(c.dir, EXE, 'FileHash')), [['file-hash-mismatch', TOP]], 1],
  ['filesize-edited', 'xz', (c) => setField(c.dir, TOP, 'FileSize', '301'), [['file-size-mismatch', TOP]], 1],
  ['narsize-edited-unsigned', 'xz', (c) => setField(c.dir, TOP, 'NarSize', '480'), [['nar-size-mismatch', TOP]], 1, { key: false }],
  ['narhash-edited-unsigned', 'xz', (c) => setField(c.dir, TOP, 'NarHash', field(c.dir, EXE, 'NarHash')), [['nar-hash-mismatch', TOP]], 1, { key: false }],
  ['large-nar-other-contents', 'xz', (c) => replaceNarFile(c.dir, EDGE, compress('xz', narWithOtherContents(EDGE))), [['nar-hash-mismatch', EDGE]], 1],
  ['large-nar-truncated-inside-stream', 'xz', (c) => { const n = corpusNar(EDGE); replaceNarFile(c.dir, EDGE, compress('xz', n.subarray(0, n.length >> 1))); }, [['malformed-nar', EDGE]], 1],
  ['large-nar-corrupt-midway', 'zstd', (c) => replaceNarFile(c.dir, EDGE, corruptMidway(compress('zstd', corpusNar(EDGE)))), [['malformed-nar', EDGE]], 1],
  ['large-nar-corrupt-midway-xz', 'xz', (c) => replaceNarFile(c.dir, EDGE, corruptMidway(compress('xz', corpusNar(EDGE)))), [['malformed-nar', EDGE]], 1],
  ['large-nar-corrupt-midway-bzip2', 'bzip2', (c) => replaceNarFile(c.dir, EDGE, corruptMidway(compress('bzip2', corpusNar(EDGE)))), [['malformed-nar', EDGE]], 1],
  ['large-nar-longer', 'zstd', async (c) => replaceNarFile(c.dir, EDGE, await zstdDirectoryBomb(1000, 200_000)), [['nar-size-mismatch', EDGE]], 1],
  ['large-nar-bomb-zeros', 'zstd', async (c) => replaceNarFile(c.dir, EDGE, await zstdBomb()), [['malformed-nar', EDGE]], 1],
  ['compression-br', 'xz', (c) => setField(c.dir, TOP, 'Compression', 'br'), [['check-failed', TOP]], 4],
  ['compression-missing-means-bzip2', 'xz', (c) => removeField(c.dir, TOP, 'Compression'), [['malformed-nar', TOP]], 1],
  ['nar-symlink-outside', 'xz', (c) => {
    const f = narFile(c.dir, LIBDEMO);
    const outside = path.join(c.parent, 'outside.nar.xz');
    renameSync(f, outside);
    symlinkSync(outside, f);
  }, [['check-failed', LIBDEMO]], 4],
  ['nar-symlink-inside', 'xz', (c) => {
    const f = narFile(c.dir, LIBDEMO);
    renameSync(f, path.join(c.dir, 'moved.nar.xz'));
    symlinkSync('../moved.nar.xz', f);
  }, [], 0],
  ['nar-is-a-fifo', 'xz', (c) => { unlinkSync(narFile(c.dir, LIBDEMO)); execFileSync('mkfifo', [narFile(c.dir, LIBDEMO)]); }, [['check-failed', LIBDEMO]], 4],
  ['narinfo-symlink-outside', 'xz', (c) => {
    const f = path.join(c.dir, info(TOP));
    const outside = path.join(c.parent, 'outside.narinfo');
    renameSync(f, outside);
    symlinkSync(outside, f);
  }, [['orphan-nar', 'nar/0c8l40xc20lnqn6q0gags68napknnplfvr83gbpfg3iw3xpz8is1.nar.xz']], 0],
  ['nar-dir-symlink-inside', 'xz', (c) => { renameSync(path.join(c.dir, 'nar'), path.join(c.dir, 'nar2')); symlinkSync('nar2', path.join(c.dir, 'nar')); }, [], 0],
  ['nar-dir-symlink-outside', 'xz', (c) => {
    renameSync(path.join(c.dir, 'nar'), path.join(c.parent, 'nar'));
    symlinkSync(path.join(c.parent, 'nar'), path.join(c.dir, 'nar'));
  }, null, 4, { expectKinds: false }],
  ['narinfo-other-store-dir', 'xz', (c) => setField(c.dir, TOP, 'StorePath', `/other/store/${baseName(TOP)}`), [['malformed-narinfo', `/other/store/${baseName(TOP)}`]], 1, { key: false }],
  ['other-store-dir-asked', 'xz', () => {}, null, 1, { args: ['--store-dir', '/gnu/store'], expectKinds: false, key: false }],
  ...['xz', 'zstd', 'bzip2'].map((m) => [`not-${m}`, m, (c) => {
    const f = Buffer.concat([compress(m, Buffer.from('x')).subarray(0, 4), pseudoRandom(4096, 11)]);
    replaceNarFile(c.dir, LIBDEMO, f);
  }, [['malformed-nar', LIBDEMO]], 1]),
  ['several-at-once', 'xz', (c) => {
    unlinkSync(narFile(c.dir, LIBDEMO));
    removeField(c.dir, TOP, 'Sig');
    setField(c.dir, FILE, 'Compression', 'lz4');
    writeFileSync(path.join(c.dir, 'nar/stray.nar.xz'), 'stray');
  }, [['missing-nar', LIBDEMO], ['check-failed', FILE], ['untrusted', TOP], ['orphan-nar', 'nar/stray.nar.xz']], 7, { sortExpected: true }],
  ['unsigned-cache-with-key', 'unsigned', () => {}, null, 2, { expectKinds: false }],
  ['cache-is-empty', 'xz', (c) => { rmSync(c.dir, { recursive: true }); mkdirSync(c.dir); }, [['bad-cache-info', 'nix-cache-info']], 1],
  ['cache-is-a-file', 'xz', (c) => { rmSync(c.dir, { recursive: true }); writeFileSync(c.dir, 'x'); }, null, 1, { report: false }],
  ['narinfo-line-order-and-unknown-keys', 'xz', (c) => {
    const lines = narinfoLines(c.dir, TOP).reverse();
    lines.push(['System', 'x86_64-linux'], ['X-Whatever', 'yes']);
    writeNarinfoLines(c.dir, TOP, lines);
  }, null, null, { expectKinds: false }],
];

async function bothVerify(dir, args) {
  const [native, wasm] = await Promise.all([run(bin, ['verify', '--jobs', '1', ...args, dir]), run(process.execPath, [CLI, ...args, dir])]);
  return { native, wasm };
}

test('native and wasm verifiers agree on every damaged cache (JSON, text, exit codes; also --no-contents)', { timeout: 600_000 }, async (t) => {
  if (!bin) return t.skip('no native nar-tool: cargo build, or set NAR_TOOL_BIN');
  assert.ok(cases.length >= 60);
  const failures = [];
  for (const [name, cache, damage, expected, exit, opts = {}] of cases) {
    const c = copyCache(cache);
    try {
      await damage(c);
      const keyArgs = opts.key === false ? [] : ['--trusted-key', CORPUS_KEY];
      for (const mode of [['--json'], [], ['--json', '--no-contents']]) {
        const args = [...mode, ...keyArgs, ...(opts.args ?? [])];
        const { native, wasm } = await bothVerify(c.dir, args);
        const label = `${name} [${mode.join(' ') || 'text'}]`;
        if (native.code !== wasm.code) failures.push(`${label}: exit native ${native.code}, wasm ${wasm.code}\n${native.stderr}${wasm.stderr}`);
        if (native.stdout !== wasm.stdout) {
          failures.push(`${label}: outputs differ\n--- native\n${native.stdout}--- wasm\n${wasm.stdout}${wasm.stderr}`);
        }
        if (opts.report === false) {
          // Refused before verifying: the same error, no report.
          const wasmStderr = wasm.stderr.replace(/^nar-cache-verify/, 'nar-tool');
          if (native.code !== exit || native.stdout !== '' || wasmStderr !== native.stderr || !/^nar-tool: error: /.test(native.stderr)) {
            failures.push(`${label}: expected no report, exit ${exit} and the same error\n--- native ${native.code}\n${native.stdout}${native.stderr}--- wasm ${wasm.code}\n${wasm.stdout}${wasm.stderr}`);
          }
          continue;
        }
        if (mode.includes('--json') && !/^\{\n {2}"ok": (true|false),\n/.test(native.stdout)) {
          failures.push(`${label}: no report from nar-tool: ${native.stderr}`);
        }
        if (mode.length === 1 && mode[0] === '--json' && opts.expectKinds !== false && expected) {
          // The damage does what it is meant to (as in tests/it/verify.rs).
          const want = opts.sortExpected ? [...expected].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)) : expected;
          let got;
          try {
            got = JSON.parse(native.stdout).problems.map((p) => [p.kind, p.path]);
            assert.deepStrictEqual(got, want);
            if (exit !== null) assert.equal(native.code, exit);
          } catch (e) {
            failures.push(`${label}: the damage gives ${JSON.stringify(got)} exit ${native.code}, expected ${JSON.stringify(want)} exit ${exit}`);
          }
        }
      }
    } finally {
      c.cleanup();
    }
  }
  assert.deepEqual(failures, []);
});
