// The verify worker's narinfos from nar-tool serve's pages of texts (source.js, no browser
// needed): every narinfo handed out once and byte for byte, one request per page, and whatever a
// page does not give fetched by itself.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pagedNarinfos, rawSource } from '../js/source.js';

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
