// The damage table, tests/fixtures/damage-table.json: the one list of damaged caches that
// pkg/test/differential.test.js and tests/it/verify.rs both check. This is the twin of
// tests/it/common/damage.rs, whose doc comment defines every op and content form; both must apply
// a row the same way.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as nar from '../index.js';
import {
  CACHES, REPO, baseName, compress, corpusNar, field, hashPart, narFile, narinfoFile, narinfoLines, removeField, setField, storePath,
  writeNarinfoLines,
} from './test-helpers.js';

/** Every row, in file order, with its defaults filled in. */
export function damageRows() {
  const doc = JSON.parse(readFileSync(path.join(REPO, 'tests/fixtures/damage-table.json'), 'utf8'));
  return doc.rows.map((r) => ({ key: true, args: [], storage: false, report: true, nix: true, ...r }));
}

/** Replaces every `${kind:arg}` in `s`; `dir` is the damaged copy (none for expectations). */
function resolve(s, cache, dir) {
  return s.replace(/\$\{([^}]*)\}/g, (_, t) => {
    const i = t.indexOf(':');
    const [kind, arg] = i < 0 ? [t, ''] : [t.slice(0, i), t.slice(i + 1)];
    switch (kind) {
      case 'path': return storePath(arg);
      case 'base': return baseName(storePath(arg));
      case 'hash': return hashPart(storePath(arg));
      case 'narinfo': return narinfoFile(storePath(arg));
      case 'url': return field(path.join(CACHES, cache), storePath(arg), 'URL');
      case 'field': {
        const j = arg.indexOf(':');
        return field(dir, storePath(arg.slice(0, j)), arg.slice(j + 1));
      }
      case 'outside': return path.dirname(dir);
      default: throw new Error(`unknown template \${${t}}`);
    }
  });
}

/** The problems a row expects, as [kind, path] in report order; null when it does not say. */
export function expectedProblems(row) {
  return row.expect && row.expect.map(([kind, p]) => [kind, resolve(p, row.cache, null)]);
}

/** Applies a row's damage to the copy of its cache at `dir`. */
export async function applyDamage(row, dir) {
  const file = (name) => {
    const n = resolve(name, row.cache, dir);
    return n === '.' ? dir : path.isAbsolute(n) ? n : path.join(dir, n);
  };
  const label = (l) => storePath(l);
  const text = (s) => resolve(s, row.cache, dir);
  for (const op of row.damage) {
    switch (op.op) {
      case 'remove': unlinkSync(file(op.file)); break;
      case 'remove-tree': rmSync(file(op.file), { recursive: true }); break;
      case 'truncate-half': truncateSync(file(op.file), statSync(file(op.file)).size >> 1); break;
      case 'flip-middle-byte': {
        const bytes = readFileSync(file(op.file));
        bytes[bytes.length >> 1] ^= 0x20;
        writeFileSync(file(op.file), bytes);
        break;
      }
      case 'mkdir': mkdirSync(file(op.file)); break;
      case 'mkfifo': execFileSync('mkfifo', [file(op.file)]); break;
      case 'write': {
        const bytes = await content(op.content, row, dir);
        writeFileSync(file(op.file), bytes);
        break;
      }
      case 'rename':
        mkdirSync(path.dirname(file(op.to)), { recursive: true });
        renameSync(file(op.from), file(op.to));
        break;
      case 'symlink': symlinkSync(text(op.target), file(op.file)); break;
      case 'set-field': setField(dir, label(op.path), text(op.key), text(op.value)); break;
      case 'remove-field': removeField(dir, label(op.path), text(op.key)); break;
      case 'drop-reference': {
        const p = label(op.path);
        const gone = baseName(label(op.reference));
        setField(dir, p, 'References', field(dir, p, 'References').split(' ').filter((r) => r !== gone).join(' '));
        break;
      }
      case 'sign': {
        const p = label(op.path);
        const info = nar.parseNarInfo(readFileSync(path.join(dir, narinfoFile(p)), 'utf8'));
        setField(dir, p, 'Sig', nar.signNarInfo({ ...info, sigs: [] }, text(op['secret-key'])).sigs[0]);
        break;
      }
      case 'rewrite-narinfo': {
        const p = label(op.path);
        const lines = narinfoLines(dir, p);
        if (op.reverse) lines.reverse();
        lines.push(...(op.append ?? []));
        writeNarinfoLines(dir, p, lines);
        break;
      }
      case 'replace-nar': {
        const p = label(op.path);
        const bytes = await content(op.content, row, dir);
        writeFileSync(narFile(dir, p), bytes);
        setField(dir, p, 'FileHash', nar.hash(bytes, 'sha256'));
        setField(dir, p, 'FileSize', String(bytes.length));
        break;
      }
      default: throw new Error(`${row.name}: unknown op ${op.op}`);
    }
  }
}

async function content(c, row, dir) {
  if (typeof c === 'string') return Buffer.from(c, 'utf8');
  if (Array.isArray(c)) return Buffer.concat(await Promise.all(c.map((p) => content(p, row, dir))));
  const kind = Object.keys(c).find((k) => !['seed', 'times', 'of'].includes(k));
  const arg = c[kind];
  switch (kind) {
    case 'hex': return Buffer.from(arg, 'hex');
    case 'random': return Buffer.from(pseudoRandom(arg, c.seed));
    case 'repeat': return Buffer.from((await content(arg, row, dir)).toString('latin1').repeat(c.times), 'latin1');
    case 'zeros': return Buffer.alloc(arg);
    case 'file': {
      const n = resolve(arg, row.cache, dir);
      return readFileSync(path.isAbsolute(n) ? n : path.join(dir, n));
    }
    case 'nar': return corpusNar(storePath(arg));
    case 'nar-other-contents': {
      const bytes = Buffer.from(corpusNar(storePath(arg)));
      bytes[bytes.indexOf('contents') + 8 + 8] ^= 0x01;
      return bytes;
    }
    case 'compress': return compress(arg, await content(c.of, row, dir));
    case 'first-half': { const b = await content(arg, row, dir); return b.subarray(0, b.length >> 1); }
    case 'head': return (await content(c.of, row, dir)).subarray(0, arg);
    case 'corrupt-midway': {
      const f = Buffer.from(await content(arg, row, dir));
      const mid = f.length >> 1;
      for (let i = mid; i < mid + 64; i++) f[i] = ~f[i] & 0xff;
      return f;
    }
    case 'zstd-bomb': return compressStream('zstd', zeros(arg));
    case 'zstd-nar-bomb': return compressStream('zstd', (function* () {
      yield Buffer.concat([tokens('nix-archive-1', '(', 'type', 'regular', 'contents'), u64(arg)]);
      yield* zeros(arg);
      yield Buffer.alloc((8 - (arg % 8)) % 8);
      yield tokens(')');
    })());
    case 'zstd-directory-bomb': return compressStream('zstd', (function* () {
      yield tokens('nix-archive-1', '(', 'type', 'directory');
      for (let i = 0; i < arg.files; i++) {
        yield Buffer.concat([tokens('entry', '(', 'name', `f${String(i).padStart(6, '0')}`, 'node', '(', 'type', 'regular', 'contents'), u64(arg.each)]);
        yield* zeros(Math.ceil(arg.each / 8) * 8);
        yield tokens(')', ')');
      }
      yield tokens(')');
    })());
    default: throw new Error(`${row.name}: unknown content ${JSON.stringify(c)}`);
  }
}

/** xorshift64 from `seed | 1`, a byte per step: the bytes tests/it/common/damage.rs makes too. */
export function pseudoRandom(n, seed) {
  const MASK = 0xffffffffffffffffn;
  let x = BigInt(seed) | 1n;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= (x << 13n) & MASK;
    x ^= x >> 7n;
    x ^= (x << 17n) & MASK;
    out[i] = Number(x & 0xffn);
  }
  return out;
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

function* zeros(n, step = 1 << 20) {
  const block = Buffer.alloc(step);
  for (let left = n; left > 0; left -= step) yield left >= step ? block : block.subarray(0, left);
}

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
