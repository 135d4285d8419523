// Caches the inspector's tests make: synthetic ones of many narinfos, and a plain static file
// server (a cache that cannot be listed, on another origin).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, readdirSync, renameSync } from 'node:fs';
import http from 'node:http';
import { join, extname, dirname } from 'node:path';
import { corpus, narToolBin, tempDir } from './serve.mjs';

/**
 * A cache of n synthetic narinfos (valid store paths, unsigned), each referencing up to 3 earlier
 * ones, all pointing at one real NAR of the corpus (its file hash and size are right).
 */
export function syntheticCache(n, { nar = 'libdemo' } = {}) {
  const dir = tempDir('nar-tool-www-synth-');
  const src = join(corpus, 'caches/xz');
  const realName = readdirSync(src).find((f) => f.endsWith('.narinfo') && readFileSync(join(src, f), 'utf8').includes(`-${nar}`));
  const real = readFileSync(join(src, realName), 'utf8');
  const get = (k) => new RegExp(`^${k}: (.*)$`, 'm').exec(real)[1];
  mkdirSync(join(dir, 'nar'));
  const url = get('URL');
  writeFileSync(join(dir, url), readFileSync(join(src, url)));
  writeFileSync(join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n');
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz';
  let seed = 0x9e3779b9;
  const rand = () => {
    // xorshift32
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const hashes = [];
  const bases = [];
  for (let i = 0; i < n; i++) {
    let h = '';
    for (let j = 0; j < 32; j++) h += alphabet[Math.floor(rand() * 32)];
    hashes.push(h);
    bases.push(`${h}-pkg-${i}-${1 + (i % 7)}.${i % 13}`);
  }
  for (let i = 0; i < n; i++) {
    const refs = new Set();
    for (let k = 0; k < Math.min(i, i % 4); k++) refs.add(bases[Math.floor(rand() * i)]);
    const text = [
      `StorePath: /nix/store/${bases[i]}`, `URL: ${url}`, `Compression: ${get('Compression')}`,
      `FileHash: ${get('FileHash')}`, `FileSize: ${get('FileSize')}`, `NarHash: ${get('NarHash')}`,
      `NarSize: ${get('NarSize')}`, `References: ${[...refs].sort().join(' ')}`, '',
    ].join('\n');
    writeFileSync(join(dir, `${hashes[i]}.narinfo`), text);
  }
  return dir;
}

/** A plain static file server with CORS, no listing endpoint (like an S3 bucket or nginx). */
export function staticCors(root) {
  const types = { '.narinfo': 'text/x-nix-narinfo', '.ls': 'application/json' };
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (path.includes('..') || !path) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(root, path));
      res.writeHead(200, { 'Content-Type': types[extname(path)] ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * A signed zstd cache (nar-tool build-cache, the corpus's key) of n store paths, each a folder
 * of one small text file: n distinct small NARs.
 */
export function smallPathsCache(n) {
  const work = tempDir('nar-tool-www-small-');
  const root = join(work, 'root');
  const paths = [];
  for (let i = 0; i < n; i++) {
    const src = join(work, `p${i}`);
    mkdirSync(src);
    writeFileSync(join(src, 'f.txt'), `path ${i}\n${'w'.repeat(i % 200)}\n`);
    const path = execFileSync(narToolBin(), ['store-path', '--name', `small-${i}`, src], { encoding: 'utf8' }).trim();
    mkdirSync(join(root, dirname(path)), { recursive: true });
    renameSync(src, join(root, path));
    paths.push(path);
  }
  writeFileSync(join(work, 'paths'), paths.join('\n') + '\n');
  const cache = join(work, 'cache');
  execFileSync(narToolBin(), ['build-cache', '-q', '--store-root', root, '--scan-references', '--to', cache, '--compression', 'zstd',
    '--sign', join(corpus, 'keys/secret'), '--paths-from', join(work, 'paths')]);
  return cache;
}
