// The verify worker's narinfos from nar-tool serve's pages of texts (source.js, no browser
// needed): every narinfo handed out once and byte for byte, one request per page, and whatever a
// page does not give fetched by itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pagedNarinfos, rawSource } from '../js/source.js';
import { narPrefetcher, parseFiles } from '../js/bundle.js';

const names = Array.from({ length: 2500 }, (_, i) => `${String(i).padStart(32, '0')}.narinfo`);
const textOf = (name) => `StorePath: /nix/store/${name.slice(0, 32)}-é\nURL: nar/x.nar\n`;

/** A fake serve: pages of texts (the text of every 7th narinfo null: not UTF-8), and files. */
function fakeServe({ pages = true } = {}) {
  const calls = { pages: [], files: [] };
  return {
    calls,
    kind: 'http',
    async narinfoTexts(offset, limit) {
      calls.pages.push([offset, limit]);
      if (!pages) return null;
      const items = names.slice(offset, offset + limit).map((n, i) => [n, (offset + i) % 7 === 3 ? null : textOf(n)]);
      return { total: names.length, items, next: offset + limit < names.length ? offset + limit : null };
    },
    async readFile(path) {
      calls.files.push(path);
      return new TextEncoder().encode(path.endsWith('.narinfo') ? textOf(path) : 'nix-cache-info');
    },
  };
}

test('narinfos come a page at a time, each once, byte for byte', async () => {
  const src = fakeServe();
  const read = pagedNarinfos(src, names);
  // In the verifier's order, several at once, as its jobs ask.
  for (let i = 0; i < names.length; i += 32) {
    const got = await Promise.all(names.slice(i, i + 32).map(read));
    got.forEach((bytes, j) => assert.deepEqual(bytes, new TextEncoder().encode(textOf(names[i + j]))));
  }
  assert.deepEqual(src.calls.pages.map(([o]) => o).sort((a, b) => a - b), [0, 1000, 2000]);
  // Only the narinfos a page had no text for were fetched by themselves.
  assert.deepEqual(src.calls.files, names.filter((_, i) => i % 7 === 3));
  // Handed out once: a second read fetches it.
  await read(names[0]);
  assert.equal(src.calls.files.at(-1), names[0]);
  // Anything else is fetched as before.
  await read('nix-cache-info');
  assert.equal(src.calls.files.at(-1), 'nix-cache-info');
});

test('a server without pages: every narinfo fetched by itself, the pages asked for once', async () => {
  const src = fakeServe({ pages: false });
  const read = pagedNarinfos(src, names);
  for (const n of names.slice(0, 1500)) assert.deepEqual(await read(n), new TextEncoder().encode(textOf(n)));
  assert.deepEqual(src.calls.files, names.slice(0, 1500));
  assert.ok(src.calls.pages.length <= 2, `${src.calls.pages.length} page requests`);
});

test('rawSource reads narinfos through pages only from a source that has them', async () => {
  const paged = fakeServe();
  await rawSource(paged, names, null).readFile(names[5]);
  assert.equal(paged.calls.pages.length > 0, true);
  assert.deepEqual(paged.calls.files, []);
  const plain = fakeServe();
  delete plain.narinfoTexts;
  await rawSource(plain, names, null).readFile(names[5]);
  assert.deepEqual(plain.calls.files, [names[5]]);
});

// ---- Small NARs in bulk (bundle.js): the framing, read strictly; the prefetcher's batches.

const MAGIC = new TextEncoder().encode('nar-tool files 1');
/** A body of `records` ([status, bytes]) and an end record counting `count` (default: all). */
function body(records, count = records.length) {
  const parts = [MAGIC];
  const head = (status, len) => {
    const h = new Uint8Array(9);
    h[0] = status;
    new DataView(h.buffer).setBigUint64(1, BigInt(len));
    return h;
  };
  for (const [status, bytes] of records) parts.push(head(status, bytes.length), bytes);
  parts.push(head(0xff, count));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

test('the files framing: sent, empty, absent and not sent told apart; anything else refused', () => {
  const keys = ['nar/a.nar', 'nar/b.nar', 'nar/c.nar', 'nar/d.nar'];
  const m = parseFiles(body([[0, new Uint8Array([1, 2])], [0, new Uint8Array()], [1, new Uint8Array()], [2, new Uint8Array()]]), keys);
  assert.deepEqual([...m.keys()], keys);
  assert.deepEqual([...m.get('nar/a.nar')], [1, 2]);
  assert.equal(m.get('nar/b.nar').length, 0);
  assert.equal(m.get('nar/c.nar'), null);
  assert.equal(m.get('nar/d.nar'), undefined);
  const ok = body([[0, new Uint8Array([1])]]);
  for (const [what, bad, k] of [
    ['cut short', ok.subarray(0, ok.length - 3), keys.slice(0, 1)],
    ['a wrong count', body([[0, new Uint8Array([1])]], 2), keys.slice(0, 1)],
    ['more records than keys', ok, []],
    ['fewer records than keys', ok, keys],
    ['no magic', new Uint8Array(40), keys],
    ['bytes after the end', new Uint8Array([...ok, 0]), keys.slice(0, 1)],
    ['a length past the body', (() => { const b = body([[0, new Uint8Array([1])]]); b[16 + 8] = 200; return b; })(), keys.slice(0, 1)],
  ]) {
    assert.throws(() => parseFiles(bad, k), undefined, what);
  }
});

test('the prefetcher: batches ahead of the reader, each file once, done batches dropped', async () => {
  const count = 1000;
  const key = (i) => `nar/${String(i).padStart(4, '0')}.nar`;
  const asked = [];
  const files = async (keys) => {
    asked.push(keys);
    return new Map(keys.map((k) => [k, k.endsWith('7.nar') ? null : new TextEncoder().encode(k)]));
  };
  const parse = (text) => JSON.parse(text);
  const p = narPrefetcher({ count, files, parse, jobs: 8 });
  for (let i = 0; i < count; i++) {
    // Every 10th too large to bundle; every 11th names no NAR file of the layout.
    const size = i % 10 === 9 ? 10 << 20 : 100;
    p.noteText(i, JSON.stringify({ url: i % 11 === 5 ? `../${key(i)}` : key(i), fileSize: size }));
  }
  p.noted(0, count);
  for (let i = 0; i < count; i++) {
    p.reading(i);
    const s = await p.openFile(key(i));
    if (i % 10 === 9 || i % 11 === 5) assert.equal(s, undefined, `${i}: not had in bulk`);
    else if (i % 10 === 7) assert.equal(s, null, `${i}: absent`);
    else {
      assert.equal(s.size, key(i).length);
      assert.equal(new TextDecoder().decode(await s.next()), key(i));
      assert.equal(await s.next(), null);
    }
    assert.equal(await p.openFile(key(i)), undefined, 'handed out once');
  }
  assert.equal(asked.length, Math.ceil(count / 128));
  assert.ok(asked.every((keys) => keys.length <= 128));
  assert.ok(!asked.flat().some((k) => k.startsWith('..')));
});

test('a server without the endpoint: asked once, then everything one by one', async () => {
  let calls = 0;
  const p = narPrefetcher({ count: 600, files: async () => (calls++, null), parse: JSON.parse });
  for (let i = 0; i < 600; i++) p.noteText(i, JSON.stringify({ url: `nar/${i}.nar`, fileSize: 1 }));
  p.noted(0, 600);
  for (let i = 0; i < 600; i++) {
    p.reading(i);
    assert.equal(await p.openFile(`nar/${i}.nar`), undefined);
  }
  assert.ok(calls <= 4, `${calls} requests`);
});
