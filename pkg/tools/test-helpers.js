// Shared by the tests in pkg/test/ (kept out of test/, where `node --test test/` runs every file).

import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(PKG, '..');
export const CORPUS = path.join(REPO, 'tests/fixtures/corpus');
export const CACHES = path.join(CORPUS, 'caches');
export const CLI = path.join(PKG, 'bin/nar-cache-verify.js');
export const CORPUS_KEY = readFileSync(path.join(CORPUS, 'keys/public'), 'utf8').trim();
export const CORPUS_SECRET = readFileSync(path.join(CORPUS, 'keys/secret'), 'utf8').trim();
export const STORE_PATHS = readFileSync(path.join(CORPUS, 'store-paths'), 'utf8').split('\n').filter(Boolean);

export const storePath = (label) => {
  const p = STORE_PATHS.find((s) => s.includes(`-${label}-public`));
  if (!p) throw new Error(`no corpus store path ${label}`);
  return p;
};
export const baseName = (p) => p.slice('/nix/store/'.length);
export const hashPart = (p) => baseName(p).slice(0, 32);
export const narinfoFile = (p) => `${hashPart(p)}.narinfo`;
export const corpusNar = (p) => readFileSync(path.join(CORPUS, 'nar', `${baseName(p)}.nar`));

/** The native nar-tool: $NAR_TOOL_BIN, else the newer of target/release and target/debug. */
export function nativeBin() {
  if (process.env.NAR_TOOL_BIN) return process.env.NAR_TOOL_BIN;
  const found = ['release', 'debug']
    .map((p) => path.join(REPO, 'target', p, 'nar-tool'))
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return found[0] ?? null;
}

export function tempDir(prefix = 'nar-tool-pkg-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A fresh copy of a corpus cache in a temporary directory (at `rel` in it): `{ dir, cleanup }`. */
export function copyCache(name, rel = 'cache') {
  const parent = tempDir();
  const dir = path.join(parent, rel);
  cpSync(path.join(CACHES, name), dir, { recursive: true });
  return { dir, parent, cleanup: () => rmSync(parent, { recursive: true, force: true }) };
}

// ---- narinfo editing (line-based, keeping every other line as it is)

export function narinfoLines(dir, p) {
  return readFileSync(path.join(dir, narinfoFile(p)), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const i = l.indexOf(': ');
      return i < 0 ? [l, null] : [l.slice(0, i), l.slice(i + 2)];
    });
}
export function writeNarinfoLines(dir, p, lines) {
  writeFileSync(path.join(dir, narinfoFile(p)), lines.map(([k, v]) => (v === null ? k : `${k}: ${v}`)).join('\n') + '\n');
}
export function field(dir, p, key) {
  const l = narinfoLines(dir, p).find(([k]) => k === key);
  if (!l) throw new Error(`no ${key} in ${p}`);
  return l[1];
}
export function setField(dir, p, key, value) {
  const lines = narinfoLines(dir, p);
  const i = lines.findIndex(([k]) => k === key);
  if (i < 0) lines.push([key, value]);
  else lines[i] = [key, value];
  writeNarinfoLines(dir, p, lines);
}
export function removeField(dir, p, key) {
  writeNarinfoLines(dir, p, narinfoLines(dir, p).filter(([k]) => k !== key));
}
export function narFile(dir, p) {
  return path.join(dir, field(dir, p, 'URL'));
}

/** Compresses with the system's xz / zstd / bzip2 (installed by scripts/setup.sh). */
export function compress(method, bytes) {
  const cmd = { xz: ['xz', ['-c', '-T1']], zstd: ['zstd', ['-c', '-q']], bzip2: ['bzip2', ['-c']], none: null }[method];
  if (cmd === null) return Buffer.from(bytes);
  const r = spawnSync(cmd[0], cmd[1], { input: bytes, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd[0]} failed: ${r.stderr}`);
  return r.stdout;
}
export function haveCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Runs a command: `{ code, stdout, stderr }` (async, so an in-process HTTP server keeps serving). */
export function run(cmd, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code: code ?? 128, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
  });
}

export function runCli(args, options = {}) {
  return run(process.execPath, [CLI, ...args], options);
}

export function listFiles(dir, prefix = '') {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(path.join(dir, e.name), rel));
    else out.push(rel);
  }
  return out.sort();
}

/** Serves a directory over HTTP: GET and HEAD, 404s; `listing` adds nar-tool serve's listings. */
export async function serveDir(dir, { listing = false, head = true, contentLength = true } = {}) {
  const requests = [];
  const server = createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1));
    requests.push(`${req.method} ${rel}`);
    if (req.method === 'HEAD' && !head) {
      res.writeHead(405).end();
      return;
    }
    if (listing && rel === '_nar-tool/narinfos') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(readdirSync(dir).filter((n) => n.endsWith('.narinfo')).sort()));
      return;
    }
    if (listing && rel === '_nar-tool/nar-files') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(readdirSync(path.join(dir, 'nar')).map((n) => `nar/${n}`).sort()));
      return;
    }
    const file = path.join(dir, rel);
    if (rel.includes('..') || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found\n');
      return;
    }
    const body = readFileSync(file);
    const headers = contentLength ? { 'content-length': body.length } : {};
    if (req.method === 'HEAD') {
      res.writeHead(200, headers).end();
      return;
    }
    if (!contentLength) {
      // Chunked: no length known in advance.
      res.writeHead(200);
      res.write(body.subarray(0, body.length >> 1));
      res.end(body.subarray(body.length >> 1));
      return;
    }
    res.writeHead(200, headers).end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}/`, requests, close: () => new Promise((r) => server.close(r)) };
}


/** A fresh ed25519 secret key in Nix's format `name:base64(seed ‖ public key)`. */
export function generateSecretKey(name) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d, 'base64url');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  return { secret: `${name}:${Buffer.concat([seed, pub]).toString('base64')}`, public: `${name}:${pub.toString('base64')}` };
}

/**
 * A cache of `n` unsigned narinfos (valid, distinct store paths, no references) at `dir`, all
 * pointing at one real NAR of the corpus xz cache (file hash and size right): clean, but untrusted
 * with any key.
 */
export function syntheticCache(dir, n) {
  const src = path.join(CACHES, 'xz');
  const real = readFileSync(path.join(src, narinfoFile(storePath('libdemo-1.0'))), 'utf8');
  const get = (k) => new RegExp(`^${k}: (.*)$`, 'm').exec(real)[1];
  mkdirSync(path.join(dir, 'nar'), { recursive: true });
  cpSync(path.join(src, 'nix-cache-info'), path.join(dir, 'nix-cache-info'));
  cpSync(path.join(src, get('URL')), path.join(dir, get('URL')));
  for (let i = 0; i < n; i++) {
    const hash = `s${String(i).padStart(31, '0')}`;
    const text = [
      `StorePath: /nix/store/${hash}-pkg-${i}`, `URL: ${get('URL')}`, `Compression: ${get('Compression')}`,
      `FileHash: ${get('FileHash')}`, `FileSize: ${get('FileSize')}`, `NarHash: ${get('NarHash')}`,
      `NarSize: ${get('NarSize')}`, 'References: ', '',
    ].join('\n');
    writeFileSync(path.join(dir, `${hash}.narinfo`), text);
  }
  return dir;
}
