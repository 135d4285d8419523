// The JS API against the Nix 2.8 corpus (tests/fixtures/corpus): formats, hashes, signatures,
// NAR listings and files, the streaming verifier and the decompressors.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import * as nar from '../index.js';
import { CACHES, CORPUS, CORPUS_KEY, CORPUS_SECRET, PKG, STORE_PATHS, baseName, corpusNar, generateSecretKey, hashPart, storePath } from '../tools/test-helpers.js';

const NIX_HASHES = new Map(
  readFileSync(path.join(CORPUS, 'nix-hash.txt'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [name, base32, hex] = l.split(' ');
      return [name, { base32, hex }];
    }),
);
const COMPRESSIONS = ['xz', 'zstd', 'bzip2', 'none'];
const narinfoText = (cache, p) => readFileSync(path.join(CACHES, cache, `${hashPart(p)}.narinfo`), 'utf8');
const listingOf = (p) => JSON.parse(readFileSync(path.join(CACHES, 'xz', `${hashPart(p)}.ls`), 'utf8'));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (h) => new Uint8Array(Buffer.from(h, 'hex'));

test('init() resolves in Node (the wasm is ready on import)', async () => {
  assert.equal(nar.isInitialised(), true);
  await nar.init();
});

// ---- nixbase32 and hashes

test('nixbase32: the corpus hashes, both ways', () => {
  assert.equal(NIX_HASHES.size, 9);
  for (const { base32, hex: h } of NIX_HASHES.values()) {
    assert.equal(nar.nixbase32Encode(fromHex(h)), base32);
    assert.equal(hex(nar.nixbase32Decode(base32)), h);
  }
});

test('nixbase32: round trip of every length 0..70', () => {
  for (let n = 0; n <= 70; n++) {
    const bytes = new Uint8Array(n).map((_, i) => (i * 151 + n * 7 + 13) & 0xff);
    const text = nar.nixbase32Encode(bytes);
    assert.equal(text.length, Math.ceil((8 * n) / 5));
    assert.match(text, /^[0-9abcdfghijklmnpqrsvwxyz]*$/);
    assert.deepEqual(nar.nixbase32Decode(text), bytes);
  }
});

test('nixbase32: decoding refuses characters outside the alphabet, with an Error', () => {
  for (const bad of ['e', 'o', 'u', 't', 'E', '0000000000000000000000000000000!']) {
    assert.throws(() => nar.nixbase32Decode(bad), (e) => e instanceof Error && e.message.length > 0, bad);
  }
});

test('hash: the NARs hash to nix-hash --type sha256 (nixbase32 by default, base16, SRI, base64)', () => {
  for (const p of STORE_PATHS) {
    const bytes = corpusNar(p);
    const { base32, hex: h } = NIX_HASHES.get(baseName(p));
    assert.equal(nar.hash(bytes, 'sha256'), `sha256:${base32}`);
    assert.equal(nar.hash(bytes, 'sha256', 'nixbase32'), `sha256:${base32}`);
    assert.equal(nar.hash(bytes, 'sha256', 'base16').replace(/^sha256:/, ''), h);
    const b64 = Buffer.from(h, 'hex').toString('base64');
    assert.equal(nar.hash(bytes, 'sha256', 'sri'), `sha256-${b64}`);
    assert.equal(nar.hash(bytes, 'sha256', 'base64').replace(/^sha256:/, ''), b64);
  }
});

test('hash: md5, sha1, sha512 agree with node:crypto', () => {
  const inputs = [new Uint8Array(0), new TextEncoder().encode('hello\n'), corpusNar(storePath('libdemo-1.0'))];
  for (const algo of ['md5', 'sha1', 'sha256', 'sha512']) {
    for (const bytes of inputs) {
      const expected = createHash(algo).update(bytes).digest();
      assert.equal(nar.hash(bytes, algo, 'base16').replace(`${algo}:`, ''), expected.toString('hex'), algo);
      assert.equal(nar.hash(bytes, algo, 'sri'), `${algo}-${expected.toString('base64')}`, algo);
      assert.equal(nar.hash(bytes, algo), `${algo}:${nar.nixbase32Encode(expected)}`, algo);
    }
  }
  assert.throws(() => nar.hash(new Uint8Array(1), 'sha3'), Error);
});

// ---- narinfo, signatures, store paths, cache info

test('parseNarInfo/formatNarInfo: every corpus narinfo round-trips byte for byte', () => {
  let n = 0;
  for (const cache of readdirSync(CACHES)) {
    for (const f of readdirSync(path.join(CACHES, cache)).filter((f) => f.endsWith('.narinfo'))) {
      const text = readFileSync(path.join(CACHES, cache, f), 'utf8');
      const info = nar.parseNarInfo(text);
      assert.equal(nar.formatNarInfo(info), text, `${cache}/${f}`);
      n++;
    }
  }
  assert.equal(n, 54);
});

test('parseNarInfo: every field', () => {
  const top = storePath('closure-top');
  const info = nar.parseNarInfo(narinfoText('xz', top));
  assert.equal(info.storePath, top);
  assert.equal(info.compression, 'xz');
  assert.equal(info.url, 'nar/0c8l40xc20lnqn6q0gags68napknnplfvr83gbpfg3iw3xpz8is1.nar.xz');
  assert.equal(info.fileHash, 'sha256:0c8l40xc20lnqn6q0gags68napknnplfvr83gbpfg3iw3xpz8is1');
  assert.equal(info.fileSize, 300);
  assert.equal(info.narHash, `sha256:${NIX_HASHES.get(baseName(top)).base32}`);
  assert.equal(info.narSize, 472);
  assert.deepEqual(info.references, [baseName(storePath('bare-symlink')), baseName(storePath('single-exe')), baseName(storePath('app-0.9'))]);
  assert.equal(info.deriver, 'lqwl9gpwjimm2n32zvq94yjpz20mcfy0-closure-top-public.drv');
  assert.equal(info.system, null);
  assert.equal(info.sigs.length, 1);
  assert.equal(info.ca, null);
  assert.deepEqual(info.extra, []);

  const added = nar.parseNarInfo(narinfoText('xz', storePath('added')));
  assert.match(added.ca, /^fixed:r:sha256:/);

  const withUnknown = nar.parseNarInfo(`${narinfoText('xz', top)}System: x86_64-linux\nFrobnicate: yes\n`);
  assert.equal(withUnknown.system, 'x86_64-linux');
  assert.deepEqual(withUnknown.extra, [['Frobnicate', 'yes']]);
});

test('parseNarInfo: malformed text throws an Error with a message', () => {
  for (const bad of ['', 'garbage\n', 'StorePath: /nix/store/x\n', narinfoText('xz', storePath('closure-top')).replace(/^NarHash.*\n/m, '')]) {
    assert.throws(() => nar.parseNarInfo(bad), (e) => e instanceof Error && e.message.length > 0);
  }
});

test('fingerprint: 1;path;NarHash;NarSize;full references', () => {
  const top = storePath('closure-top');
  const info = nar.parseNarInfo(narinfoText('xz', top));
  assert.equal(nar.fingerprint(info), `1;${top};${info.narHash};472;${info.references.map((r) => `/nix/store/${r}`).join(',')}`);
});

test('verifySignatures: valid, invalid after an edit, unknown keys; malformed lines and keys throw', () => {
  const top = storePath('closure-top');
  const info = nar.parseNarInfo(narinfoText('xz', top));
  assert.deepEqual(nar.verifySignatures(info, [CORPUS_KEY]), { valid: ['corpus-public-1'], invalid: [], unknown: [], malformed: [] });
  assert.deepEqual(nar.verifySignatures({ ...info, narSize: info.narSize + 1 }, [CORPUS_KEY]).invalid, ['corpus-public-1']);
  const other = generateSecretKey('other-1');
  assert.equal(nar.publicKeyOf(other.secret), other.public);
  assert.throws(() => nar.publicKeyOf(`other-1:${Buffer.alloc(64, 9).toString('base64')}`), /does not belong/);
  const r = nar.verifySignatures(info, [other.public]);
  assert.deepEqual(r.valid, []);
  assert.deepEqual(r.unknown, ['corpus-public-1']);
  // A Sig line that is no signature makes the narinfo malformed (as parseNarInfo says).
  assert.throws(() => nar.verifySignatures({ ...info, sigs: [...info.sigs, 'no-colon-here'] }, [CORPUS_KEY]), /not of the form NAME:BASE64/);
  assert.throws(() => nar.verifySignatures(info, ['bad']), Error);
});

test('signNarInfo: signing the unsigned corpus narinfos gives the corpus signatures (ed25519 is deterministic)', () => {
  assert.equal(nar.publicKeyOf(CORPUS_SECRET), CORPUS_KEY);
  for (const p of STORE_PATHS) {
    const unsigned = nar.parseNarInfo(narinfoText('unsigned', p));
    assert.deepEqual(unsigned.sigs, []);
    const signed = nar.signNarInfo(unsigned, CORPUS_SECRET);
    assert.deepEqual(unsigned.sigs, [], 'the argument is not changed');
    assert.deepEqual(signed.sigs, nar.parseNarInfo(narinfoText('xz', p)).sigs, p);
    assert.deepEqual(nar.verifySignatures(signed, [CORPUS_KEY]).valid, ['corpus-public-1']);
  }
  assert.throws(() => nar.signNarInfo(nar.parseNarInfo(narinfoText('unsigned', STORE_PATHS[0])), 'not-a-key'), Error);
});

test('parseStorePath: parts, version, store directory', () => {
  const p = storePath('libdemo-1.0');
  assert.deepEqual(nar.parseStorePath(p), {
    storeDir: '/nix/store',
    hashPart: hashPart(p),
    name: 'libdemo', // as Nix's DrvName splits it: the name before the version
    version: '1.0-public',
    baseName: baseName(p),
    path: p,
  });
  assert.equal(nar.parseStorePath(storePath('closure-top')).version, '');
  assert.equal(nar.parseStorePath(storePath('closure-top')).name, 'closure-top-public');
  const other = nar.parseStorePath(`/gnu/store/${baseName(p)}`, '/gnu/store');
  assert.equal(other.storeDir, '/gnu/store');
  assert.throws(() => nar.parseStorePath(`/gnu/store/${baseName(p)}`), Error);
  assert.throws(() => nar.parseStorePath('/nix/store/tooshort-x'), Error);
  assert.throws(() => nar.parseStorePath(`/nix/store/${hashPart(p)}-.hidden`), Error);
});

test('parseCacheInfo', () => {
  assert.deepEqual(nar.parseCacheInfo(readFileSync(path.join(CACHES, 'xz/nix-cache-info'), 'utf8')), {
    storeDir: '/nix/store',
    wantMassQuery: false,
    priority: null,
  });
  assert.deepEqual(nar.parseCacheInfo('StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\nOther: x\n'), {
    storeDir: '/nix/store',
    wantMassQuery: true,
    priority: 40,
  });
});

test('closure: the closure of closure-top among the corpus narinfos', () => {
  const infos = STORE_PATHS.map((p) => nar.parseNarInfo(narinfoText('xz', p)));
  const top = storePath('closure-top');
  const expected = new Set([top]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const i of infos) {
      if (expected.has(i.storePath)) {
        for (const r of i.references) {
          if (!expected.has(`/nix/store/${r}`)) {
            expected.add(`/nix/store/${r}`);
            grew = true;
          }
        }
      }
    }
  }
  assert.ok(expected.size > 3);
  assert.deepEqual(nar.closure(infos, [top]), [...expected].sort());
  // A missing reference is skipped.
  assert.deepEqual(nar.closure(infos.filter((i) => i.storePath !== storePath('single-exe')), [top]), [...expected].filter((p) => p !== storePath('single-exe')).sort());
});

test('CacheGraph: closures with what is missing, referrers, why-depends, grown with add()', () => {
  const infos = STORE_PATHS.map((p) => nar.parseNarInfo(narinfoText('xz', p)));
  const [top, app, tool, lib, edge, symlink] = ['closure-top', 'app-0.9', 'tool-2.3', 'libdemo-1.0', 'edge-cases', 'bare-symlink'].map(storePath);
  const graph = new nar.CacheGraph(infos.filter((i) => i.storePath !== lib));
  try {
    assert.equal(graph.size, 8);
    const all = nar.closure(infos, [top]);
    assert.deepEqual(graph.closure([top]), all.filter((p) => p !== lib));
    const { paths, missing } = graph.closureWithMissing([baseName(top)]);
    assert.deepEqual({ paths, missing }, { paths: all.filter((p) => p !== lib), missing: [lib] });
    // Direct referrers, sorted; tool refers to itself.
    assert.deepEqual(graph.referrers(lib), [tool, app].sort());
    assert.deepEqual(graph.referrers(tool), [tool, app].sort());
    assert.deepEqual(graph.referrers(top), []);
    // The shortest chain; of two (through bare-symlink and app), the first in store path order.
    assert.deepEqual(graph.whyDepends(top, lib), [top, app, lib]);
    assert.deepEqual(graph.whyDepends(top, edge), [top, [symlink, app].sort()[0], edge]);
    assert.deepEqual(graph.whyDepends(top, top), [top]);
    assert.equal(graph.whyDepends(lib, top), null);
    assert.equal(graph.add([infos.find((i) => i.storePath === lib)]), graph);
    const grown = graph.closureWithMissing([top]);
    assert.deepEqual({ paths: grown.paths, missing: grown.missing }, { paths: all, missing: [] });
    assert.throws(() => graph.referrers('not a path'), (e) => e instanceof Error && /not a path/.test(e.message));
  } finally {
    graph.free();
  }
  assert.throws(() => graph.closure([top]), /freed/);
});

test('CacheGraph: sizes of closures, each path\'s closure size, and what each path adds (nix-tree)', () => {
  const infos = STORE_PATHS.map((p) => nar.parseNarInfo(narinfoText('xz', p)));
  const top = storePath('closure-top');
  const sum = (paths, key) => paths.reduce((n, p) => n + infos.find((i) => i.storePath === p)[key], 0);
  const graph = new nar.CacheGraph(infos);
  try {
    const c = graph.closureWithMissing([top]);
    assert.equal(c.narSize, sum(c.paths, 'narSize'));
    assert.equal(c.fileSize, sum(c.paths, 'fileSize'));
    const sizes = graph.closureSizes(c.paths);
    c.paths.forEach((p, i) => {
      const own = nar.closure(infos, [p]);
      assert.deepEqual(sizes[i], { narSize: sum(own, 'narSize'), fileSize: sum(own, 'fileSize') }, p);
    });
    const tree = graph.closureTree(top);
    assert.deepEqual(tree.map((n) => n.path).sort(), c.paths);
    assert.equal(tree[0].path, top);
    assert.equal(tree[0].dominator, null);
    assert.deepEqual(tree[0].added, { narSize: c.narSize, fileSize: c.fileSize });
    // What a path adds is what its removal removes from the closure.
    for (const node of tree.slice(1)) {
      const without = new nar.CacheGraph(infos.filter((i) => i.storePath !== node.path));
      try {
        const kept = without.closureWithMissing([top]);
        assert.deepEqual(node.added, { narSize: c.narSize - kept.narSize, fileSize: c.fileSize - kept.fileSize }, node.path);
      } finally {
        without.free();
      }
      assert.ok(tree.findIndex((n) => n.path === node.dominator) < tree.indexOf(node), 'after its dominator');
      assert.equal(node.narSize, infos.find((i) => i.storePath === node.path).narSize);
    }
    // libdemo is reached through app and through tool: it adds only itself to app's closure.
    const app = graph.closureTree(storePath('app-0.9'));
    const lib = app.find((n) => n.path === storePath('libdemo-1.0'));
    assert.equal(lib.dominator, storePath('app-0.9'));
    assert.deepEqual(graph.closureTree('/nix/store/00000000000000000000000000000000-absent'), []);
  } finally {
    graph.free();
  }
});

test('options objects: an unknown key is an error naming the one meant, never ignored', async () => {
  await assert.rejects(nar.verifyCache(path.join(CACHES, 'xz'), { trustedKey: [CORPUS_KEY] }), (e) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /^nar-tool: verifyCache: unknown option "trustedKey" \(did you mean "trustedKeys"\?\); the options are trustedKeys, /);
    return true;
  });
  await assert.rejects(nar.verifyCache(path.join(CACHES, 'xz'), { check_contents: false }), /did you mean "checkContents"/);
  await assert.rejects(nar.verifyCache(path.join(CACHES, 'xz'), { colour: true }), /unknown option "colour"; the options are/);
  await assert.rejects(nar.verifyCache(path.join(CACHES, 'xz'), 'fast'), /the options must be an object/);
  assert.throws(() => nar.httpSource('http://127.0.0.1:9/', { root: ['x'] }), /httpSource: unknown option "root" \(did you mean "roots"\?\)/);
  const report = { ok: true, paths: 0, checked_bytes: 0, problems: [] };
  assert.throws(() => nar.renderReport(report, 'c', 'junit', { path: [] }), /renderReport: unknown option "path" \(did you mean "paths"\?\)/);
  // Known keys with undefined values are fine.
  assert.equal((await nar.verifyCache(path.join(CACHES, 'xz'), { trustedKeys: [CORPUS_KEY], onProgress: undefined })).ok, true);
  // Every option the types declare is taken (the list checked and the types do not drift apart).
  const types = readFileSync(path.join(PKG, 'index.d.ts'), 'utf8');
  const keysOf = (name) => [...new RegExp(`interface ${name} \\{([^}]*)\\}`).exec(types)[1].matchAll(/^\s*(\w+)\?:/gm)].map((m) => m[1]);
  const declared = [...keysOf('VerifyOptions'), ...keysOf('HttpSourceOptions')];
  assert.ok(declared.includes('memoryLimit') && declared.includes('roots'), declared.join(' '));
  const all = Object.fromEntries(declared.map((k) => [k, undefined]));
  assert.equal((await nar.verifyCache(path.join(CACHES, 'xz'), all)).ok, true);
  assert.equal(typeof nar.httpSource('http://127.0.0.1:9/', Object.fromEntries(keysOf('HttpSourceOptions').map((k) => [k, undefined]))).reach, 'function');
});

test('parsePublicKey and escapeControls: the core\'s', () => {
  assert.deepEqual(nar.parsePublicKey(CORPUS_KEY), { name: 'corpus-public-1', key: CORPUS_KEY });
  assert.throws(() => nar.parsePublicKey('name:AAAA'), (e) => e instanceof Error && /name/.test(e.message));
  assert.throws(() => nar.parsePublicKey(CORPUS_SECRET), Error);
  assert.equal(nar.escapeControls('a\r\u001b[2Kb\nc\u009b\u202e'), 'a\\r\\u{1b}[2Kb\\nc\\u{9b}\\u{202e}');
  assert.equal(nar.escapeControls('plain ✓'), 'plain ✓');
});

// ---- NARs

test('listNar: every corpus NAR gives the .ls document Nix wrote', () => {
  for (const p of STORE_PATHS) {
    assert.deepStrictEqual(nar.listNar(corpusNar(p)), listingOf(p), p);
  }
});

function* regularFiles(node, prefix = '') {
  if (node.type === 'regular') yield [prefix, node];
  if (node.type === 'directory') {
    for (const [name, child] of Object.entries(node.entries)) yield* regularFiles(child, prefix ? `${prefix}/${name}` : name);
  }
}

test('readNarFile: every regular file is the NAR bytes at its narOffset', () => {
  let n = 0;
  for (const p of STORE_PATHS) {
    const bytes = corpusNar(p);
    for (const [rel, node] of regularFiles(listingOf(p).root)) {
      assert.deepEqual(Buffer.from(nar.readNarFile(bytes, rel)), bytes.subarray(node.narOffset, node.narOffset + node.size), `${p} ${rel}`);
      n++;
    }
  }
  assert.ok(n > 40);
});

test('readNarFile: symlinks inside the NAR are followed, escaping or dangling ones refused', () => {
  const edge = corpusNar(storePath('edge-cases'));
  assert.deepEqual(nar.readNarFile(edge, 'link-rel'), nar.readNarFile(edge, 'run.sh'));
  assert.deepEqual(nar.readNarFile(edge, 'link-dir/b/c/d/e/f/g/h/i/j/leaf'), nar.readNarFile(edge, 'deep/a/b/c/d/e/f/g/h/i/j/leaf'));
  for (const bad of ['link-abs', 'link-dangling', 'no-such-file', 'deep', '../x']) {
    assert.throws(() => nar.readNarFile(edge, bad), (e) => e instanceof Error && e.message.length > 0, bad);
  }
  // A root file is "".
  const single = corpusNar(storePath('single-file'));
  const { root } = listingOf(storePath('single-file'));
  assert.deepEqual(Buffer.from(nar.readNarFile(single, '')), single.subarray(root.narOffset, root.narOffset + root.size));
});

test('listNar: compressed bytes are said to be compressed (xz, zstd, bzip2), not "a string of … bytes"', () => {
  const lib = storePath('libdemo-1.0');
  for (const c of ['xz', 'zstd', 'bzip2']) {
    const file = readFileSync(path.join(CACHES, c, nar.parseNarInfo(narinfoText(c, lib)).url));
    assert.throws(() => nar.listNar(file), (e) => {
      assert.equal(e.message, `NAR byte offset 0: not a NAR: the input looks ${c}-compressed (it starts with ${c}'s magic bytes): decompress it first`);
      return true;
    }, c);
    assert.deepEqual(nar.listNar(nar.decompress(file, c)), listingOf(lib));
  }
});

test('listNar: a damaged NAR throws an Error', () => {
  const bytes = Buffer.from(corpusNar(storePath('tool-2.3')));
  assert.throws(() => nar.listNar(bytes.subarray(0, 100)), Error);
  const bad = Buffer.from(bytes);
  bad[8] = 'N'.charCodeAt(0);
  assert.throws(() => nar.listNar(bad), Error);
  assert.throws(() => nar.listNar(Buffer.concat([bytes, Buffer.alloc(8)])), Error);
});

function feed(verifier, bytes, step) {
  for (let i = 0; i < bytes.length; i += step) verifier.update(bytes.subarray(i, Math.min(i + step, bytes.length)));
  return verifier.finish();
}

test('NarVerifier: chunks of 1 byte, 7 bytes and the whole NAR give the corpus hashes and listings', () => {
  for (const p of STORE_PATHS) {
    const bytes = corpusNar(p);
    const expected = `sha256:${NIX_HASHES.get(baseName(p)).base32}`;
    // 1-byte chunks over the 1.3 MB NAR would only take long: its first 64 KiB one by one then.
    for (const step of [1, 7, 4096 + 3, bytes.length]) {
      const v = new nar.NarVerifier();
      let s;
      if (step === 1 && bytes.length > 65536) {
        for (let i = 0; i < 65536; i++) v.update(bytes.subarray(i, i + 1));
        v.update(bytes.subarray(65536));
        s = v.finish();
      } else {
        s = feed(v, bytes, step);
      }
      assert.equal(s.narHash, expected, `${p} step ${step}`);
      assert.equal(s.narSize, bytes.length);
      assert.deepStrictEqual(s.listing, listingOf(p));
      assert.equal(s.fileHash, undefined);
    }
  }
});

test('NarVerifier with a compression: the file hash and size of every corpus cache file', () => {
  for (const cache of COMPRESSIONS) {
    for (const p of STORE_PATHS) {
      const info = nar.parseNarInfo(narinfoText(cache, p));
      const file = readFileSync(path.join(CACHES, cache, info.url));
      for (const step of [7, 65536, file.length]) {
        const s = feed(new nar.NarVerifier(info.compression), file, step);
        assert.equal(s.narHash, info.narHash, `${cache} ${p}`);
        assert.equal(s.narSize, info.narSize);
        assert.equal(s.fileHash, info.fileHash);
        assert.equal(s.fileSize, info.fileSize);
        assert.deepStrictEqual(s.listing, listingOf(p));
      }
    }
  }
});

test('NarVerifier: the same results with the wasm\'s SHA-256 (null) and a hasher of one\'s own', () => {
  const p = storePath('libdemo-1.0');
  const info = nar.parseNarInfo(narinfoText('xz', p));
  const file = readFileSync(path.join(CACHES, 'xz', info.url));
  let updates = 0;
  const mine = () => {
    const h = createHash('sha256');
    return { update: (b) => { updates++; h.update(b); }, digest: () => new Uint8Array(h.digest()) };
  };
  const results = [undefined, null, mine].map((sha256) => feed(new nar.NarVerifier('xz', sha256), file, 5000));
  assert.deepStrictEqual(results[1], results[0]);
  assert.deepStrictEqual(results[2], results[0]);
  assert.equal(results[0].fileHash, info.fileHash);
  assert.ok(updates > 0);
  assert.deepStrictEqual(feed(new nar.NarVerifier(null, null), corpusNar(p), 999).narHash, info.narHash);
});

test('readNarFile: an absolute symlink into the NAR\'s own store path stays inside, given that path', () => {
  const sym = storePath('bare-symlink');
  const edge = storePath('edge-cases');
  // bare-symlink is a symlink to <edge-cases>/run.sh: inside edge-cases' NAR such a link resolves.
  const target = listingOf(sym).root.target;
  assert.equal(target, `${edge}/run.sh`);
  const edgeNar = corpusNar(edge);
  assert.deepEqual(nar.resolveNarPath(listingOf(edge), 'link-rel', edge).path, 'run.sh');
  assert.deepEqual(nar.readNarFile(edgeNar, 'run.sh', edge), nar.readNarFile(edgeNar, 'link-rel'));
  assert.throws(() => nar.readNarFile(edgeNar, 'link-abs', edge), Error, '/etc/hostname is outside');
  // A link out of the NAR: where it leads.
  assert.deepEqual(nar.resolveNarPath(listingOf(edge), 'link-abs', edge), { outside: '/etc/hostname' });
  assert.deepEqual(nar.resolveNarPath(listingOf(sym), 'x/../y', sym), { outside: `${edge}/run.sh/y` });
  assert.deepEqual(nar.resolveNarPath(listingOf(edge), '../other/bin', edge), { outside: `${edge.slice(0, edge.lastIndexOf('/'))}/other/bin` });
});

test('NarVerifier: throws at a malformed byte, and at a truncated end', () => {
  const bytes = Buffer.from(corpusNar(storePath('tool-2.3')));
  const bad = Buffer.from(bytes);
  bad[8] ^= 0x20;
  const v = new nar.NarVerifier();
  assert.throws(() => feed(v, bad, 7), (e) => e instanceof Error && e.message.length > 0);
  v.free();
  const t = new nar.NarVerifier();
  t.update(bytes.subarray(0, bytes.length - 8));
  assert.throws(() => t.finish(), Error);
  assert.throws(() => new nar.NarVerifier('lz4'), Error);
});

// ---- decompression

test('decompress: bytes of every corpus compression give the NAR', () => {
  for (const cache of COMPRESSIONS) {
    for (const p of STORE_PATHS) {
      const info = nar.parseNarInfo(narinfoText(cache, p));
      const out = nar.decompress(readFileSync(path.join(CACHES, cache, info.url)), info.compression);
      assert.ok(out instanceof Uint8Array);
      assert.deepEqual(Buffer.from(out), corpusNar(p), `${cache} ${p}`);
    }
  }
});

async function collect(stream) {
  const parts = [];
  for await (const chunk of stream) parts.push(chunk);
  return Buffer.concat(parts);
}

function webStream(bytes, step) {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.subarray(at, at + step));
      at += step;
    },
  });
}

test('decompress: a stream in gives a ReadableStream out (web streams, Node streams, odd chunks)', async () => {
  const p = storePath('edge-cases');
  for (const cache of COMPRESSIONS) {
    const info = nar.parseNarInfo(narinfoText(cache, p));
    const file = readFileSync(path.join(CACHES, cache, info.url));
    for (const step of [1000, 65536]) {
      const out = nar.decompress(webStream(file, step), info.compression);
      assert.ok(out instanceof ReadableStream);
      assert.deepEqual(await collect(out), corpusNar(p), `${cache} step ${step}`);
    }
    const fromNode = nar.decompress(createReadStream(path.join(CACHES, cache, info.url), { highWaterMark: 4099 }), info.compression);
    assert.deepEqual(await collect(fromNode), corpusNar(p), `${cache} from a Node stream`);
    const fromIterable = nar.decompress(Readable.from([file.subarray(0, 10), file.subarray(10)]), info.compression);
    assert.deepEqual(await collect(fromIterable), corpusNar(p));
  }
});

test('Decompressor: update/finish by hand', () => {
  const p = storePath('libdemo-1.0');
  const info = nar.parseNarInfo(narinfoText('zstd', p));
  const file = readFileSync(path.join(CACHES, 'zstd', info.url));
  const d = new nar.Decompressor('zstd');
  const parts = [];
  for (let i = 0; i < file.length; i += 333) parts.push(d.update(file.subarray(i, i + 333)));
  parts.push(d.finish());
  assert.deepEqual(Buffer.concat(parts), corpusNar(p));
});

test('decompress: garbage throws an Error (bytes) or errors the stream', async () => {
  const junk = new Uint8Array(4096).map((_, i) => (i * 31 + 7) & 0xff);
  for (const c of ['xz', 'zstd', 'bzip2']) {
    assert.throws(() => nar.decompress(junk, c), (e) => e instanceof Error && e.message.length > 0, c);
    await assert.rejects(collect(nar.decompress(webStream(junk, 100), c)), Error, c);
  }
  assert.throws(() => nar.decompress(junk, 'lz4'), Error);
  // A truncated stream is an error too.
  const info = nar.parseNarInfo(narinfoText('xz', storePath('edge-cases')));
  const file = readFileSync(path.join(CACHES, 'xz', info.url));
  assert.throws(() => nar.decompress(file.subarray(0, file.length >> 1), 'xz'), Error);
  assert.deepEqual(nar.decompress(junk, 'none'), junk);
});
