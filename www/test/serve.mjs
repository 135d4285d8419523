// Starts `nar-tool serve` on a free loopback port for the tests, and stops it with Ctrl-C.

import { spawn } from 'node:child_process';
import { existsSync, cpSync, mkdtempSync, chmodSync, readdirSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const corpus = join(repo, 'tests/fixtures/corpus');

export function narToolBin() {
  const bin = process.env.NAR_TOOL_BIN ?? join(repo, 'target/debug/nar-tool');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build --bin nar-tool (or set NAR_TOOL_BIN)`);
  return bin;
}

/**
 * Serves `cache` with this checkout's inspector (www/) and npm package (pkg/, with its wasm build), whatever binary
 * runs — or, with `folders: false`, with what the binary has of its own (`bin`: another binary); resolves to
 * { url (the inspector's page), root (the cache's), addr, stop(), log } once it listens.
 */
export function startServe(cache, { threads = 8, args = [], quiet = true, bin = narToolBin(), folders = true } = {}) {
  const checkout = folders ? ['--inspector', join(repo, 'www'), '--pkg', join(repo, 'pkg')] : [];
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--threads', String(threads), ...checkout,
    ...(quiet ? ['--quiet'] : []), ...args, cache], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`nar-tool serve did not start: ${log}`)), 15000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      log += d;
      // Started once both lines of its banner are in: where it serves, then its inspector.
      const m = /on http:\/\/(\S+)[^\n]*\n[^\n]*\n/.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        const addr = m[1];
        resolveStart({
          addr,
          url: `http://${addr}/_nar-tool/`,
          root: `http://${addr}/`,
          get log() { return log; },
          stop: () => new Promise((done) => {
            if (child.exitCode !== null) return done(child.exitCode);
            const kill = setTimeout(() => child.kill('SIGKILL'), 10000);
            child.once('exit', (code) => { clearTimeout(kill); done(code); });
            child.kill('SIGINT');
          }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`nar-tool serve exited (${code}): ${log}`)));
    child.once('error', reject);
  });
}

const temporary = [];

/** A fresh temporary directory, removed by removeTemporary(). */
export function tempDir(prefix = 'nar-tool-www-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

export function removeTemporary() {
  for (const d of temporary.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A writable copy of a corpus cache in a fresh temporary directory. */
export function copyCache(name) {
  const dir = tempDir();
  const to = join(dir, 'cache');
  cpSync(join(corpus, 'caches', name), to, { recursive: true });
  makeWritable(to);
  return to;
}

function makeWritable(p) {
  const st = statSync(p);
  chmodSync(p, st.isDirectory() ? 0o755 : 0o644);
  if (st.isDirectory()) for (const n of readdirSync(p)) makeWritable(join(p, n));
}
