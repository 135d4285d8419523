// Node decodes what Nix accepts: zstd frames with large windows (`zstd --long=27`, and a frame
// declaring 2^31, the most libzstd decodes) and xz streams with dictionaries up to 1.5 GiB; each
// is decoded by the Decompressor and verified clean in a cache, as natively. The memory limit is
// the caller's: a smaller one refuses them, saying why.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import { STORE_PATHS, copyCache, corpusNar, haveCommand, narFile, nativeBin, run, setField, storePath } from '../tools/test-helpers.js';

const LIBDEMO = storePath('libdemo-1.0');
const NAR = corpusNar(LIBDEMO);

function crc32(bytes) {
  let crc = ~0;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** The window a zstd frame header declares (not single-segment frames). */
function zstdWindow(frame) {
  assert.deepEqual([...frame.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
  assert.equal(frame[4] & 0x20, 0, 'a window descriptor follows');
  const w = frame[5];
  const base = 2 ** (10 + (w >> 3));
  return base + (base / 8) * (w & 7);
}

/** `zstd --long=27` from a pipe (the size unknown, so the frame keeps the 128 MiB window). */
function zstdLong(bytes) {
  const r = spawnSync('zstd', ['-c', '-q', '--long=27'], { input: bytes, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, String(r.stderr));
  return r.stdout;
}

/** A zstd frame of raw blocks declaring a window of 2^31 bytes. */
function zstdWindow31(bytes) {
  const parts = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3])];
  for (let at = 0; at < bytes.length; at += 128 * 1024) {
    const block = bytes.subarray(at, Math.min(bytes.length, at + 128 * 1024));
    const last = at + block.length >= bytes.length ? 1 : 0;
    const header = (block.length << 3) | last; // raw block
    parts.push(Buffer.from([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff]), block);
  }
  return Buffer.concat(parts);
}

/** An xz stream whose LZMA2 dictionary is declared as `dictByte` (37: 1.5 GiB, 32: 256 MiB). */
function xzWithDictionary(bytes, dictByte) {
  const r = spawnSync('xz', ['-c', '-T1', '--lzma2=dict=1MiB'], { input: bytes, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, String(r.stderr));
  const packed = Buffer.from(r.stdout);
  // The block header follows the 12-byte stream header; the LZMA2 filter is id 0x21 with one
  // byte of properties, the dictionary size. Its CRC32 closes the header.
  const headerLen = (packed[12] + 1) * 4;
  const header = packed.subarray(12, 12 + headerLen);
  const filter = header.findIndex((b, i) => b === 0x21 && header[i + 1] === 0x01);
  assert.ok(filter > 0, 'an LZMA2 filter');
  header[filter + 2] = dictByte;
  header.writeUInt32LE(crc32(header.subarray(0, headerLen - 4)), headerLen - 4);
  return packed;
}

function decode(compression, packed, memoryLimit) {
  const d = new nar.Decompressor(compression, memoryLimit);
  const parts = [];
  for (let at = 0; at < packed.length; at += 65536) parts.push(d.update(packed.subarray(at, at + 65536)));
  parts.push(d.finish());
  return Buffer.concat(parts);
}

/** A copy of the corpus cache `name` whose libdemo NAR is `packed` (its FileHash and size set). */
function cacheWith(name, packed) {
  const c = copyCache(name);
  const file = narFile(c.dir, LIBDEMO);
  const fileHash = nar.hash(packed, 'sha256');
  const extension = path.basename(file).split('.nar')[1];
  const url = `nar/${fileHash.slice('sha256:'.length)}.nar${extension}`;
  writeFileSync(file, packed);
  renameSync(file, path.join(c.dir, url));
  setField(c.dir, LIBDEMO, 'URL', url);
  setField(c.dir, LIBDEMO, 'FileHash', fileHash);
  setField(c.dir, LIBDEMO, 'FileSize', String(packed.length));
  return c;
}

async function verifiesClean(c, label) {
  const report = await nar.verifyCache(c.dir);
  assert.deepEqual(report.problems, [], label);
  assert.equal(report.paths, STORE_PATHS.length);
  // And natively, the same.
  const native = await run(nativeBin(), ['verify', '--json', c.dir]);
  assert.equal(native.code, 0, `${label}, natively: ${native.stdout}${native.stderr}`);
}

/** Under a smaller memory limit: the NAR is refused (the report words it as natively, without
 *  the decoder's reason; the Decompressor gives the reason). */
async function refusedWithin(c, packed, compression, memoryLimit, what) {
  const report = await nar.verifyCache(c.dir, { memoryLimit });
  assert.deepEqual(report.problems.map((p) => [p.kind, p.path]), [['malformed-nar', LIBDEMO]]);
  assert.throws(() => decode(compression, packed, memoryLimit), (e) =>
    what.test(e.message) && e.message.includes(`memory limit allows (${memoryLimit} bytes)`));
}

test('zstd --long=27: a 128 MiB window, decoded and verified in Node; a smaller limit refuses it', { skip: !haveCommand('zstd') }, async () => {
  const packed = zstdLong(NAR);
  assert.equal(zstdWindow(packed), 2 ** 27);
  assert.ok(decode('zstd', packed).equals(NAR));
  const c = cacheWith('zstd', packed);
  try {
    await verifiesClean(c, '--long=27');
    await refusedWithin(c, packed, 'zstd', 64 << 20, /window of 134217728 bytes/);
  } finally {
    c.cleanup();
  }
});

test('a zstd frame declaring a 2^31-byte window (the most libzstd decodes) is decoded as its data needs', async () => {
  const packed = zstdWindow31(NAR);
  assert.equal(zstdWindow(packed), 2 ** 31);
  assert.ok(decode('zstd', packed).equals(NAR));
  assert.throws(() => decode('zstd', packed, 2 ** 30), /window of 2147483648 bytes, more than the memory limit allows \(1073741824 bytes\)/);
  const c = cacheWith('zstd', packed);
  try {
    await verifiesClean(c, 'window 2^31');
  } finally {
    c.cleanup();
  }
});

test('xz dictionaries of 256 MiB and 1.5 GiB are decoded and verified in Node; a smaller limit refuses them', { skip: !haveCommand('xz') }, async () => {
  for (const [dictByte, label] of [[32, '256 MiB'], [37, '1.5 GiB']]) {
    const packed = xzWithDictionary(NAR, dictByte);
    assert.ok(decode('xz', packed).equals(NAR), label);
    const c = cacheWith('xz', packed);
    try {
      await verifiesClean(c, `xz ${label}`);
      await refusedWithin(c, packed, 'xz', 128 << 20, /dictionary larger than/);
    } finally {
      c.cleanup();
    }
  }
  // The format's largest (3 GiB) is over the default limit: refused, not allocated.
  assert.throws(() => decode('xz', xzWithDictionary(NAR, 39)), /dictionary larger than the memory limit/);
});

test('a memory limit must be a number of bytes', () => {
  assert.throws(() => new nar.Decompressor('zstd', -1), /memoryLimit/);
  assert.throws(() => new nar.Decompressor('xz', Number.NaN), /memoryLimit/);
});
