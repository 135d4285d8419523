#!/usr/bin/env node
// `npm run build`: compiles the Rust core to wasm with wasm-pack into pkg/wasm/ (one build for
// Node >= 20 and browsers; wasm-opt off). Extra arguments go to wasm-pack (e.g. --dev).

import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const repo = path.resolve(pkgDir, '..');

function findWasmPack() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'wasm-pack'))) return path.join(dir, 'wasm-pack');
  }
  const cargoBin = path.join(process.env.CARGO_HOME ?? path.join(homedir(), '.cargo'), 'bin', 'wasm-pack');
  return existsSync(cargoBin) ? cargoBin : null;
}

if (!existsSync(path.join(repo, 'Cargo.toml'))) {
  console.error(`build: ${repo} is not the nar-tool repository (no Cargo.toml): the wasm is built from its Rust sources`);
  process.exit(1);
}
const wasmPack = findWasmPack();
if (!wasmPack) {
  console.error('build: wasm-pack is not installed. Run `bash scripts/setup.sh` from the repository root: it installs');
  console.error('       wasm-pack, wasm-bindgen-cli (at the version Cargo.lock pins) and the wasm32 target.');
  process.exit(1);
}
const args = ['build', '--target', 'web', '--out-dir', 'pkg/wasm', '--no-opt', ...process.argv.slice(2)];
console.error(`build: ${wasmPack} ${args.join(' ')}`);
const r = spawnSync(wasmPack, args, { cwd: repo, stdio: 'inherit' });
if (r.error) {
  console.error(`build: cannot run ${wasmPack}: ${r.error.message}`);
  process.exit(1);
}
if (r.status !== 0) {
  console.error(`build: wasm-pack failed (exit ${r.status ?? r.signal})`);
  process.exit(r.status || 1);
}
// wasm-pack writes a package.json, a README and a `*` .gitignore of its own: this package is
// pkg/, and a nested .gitignore would keep the wasm out of `npm pack`.
for (const f of ['.gitignore', 'package.json', 'README.md', 'LICENSE', 'LICENSE-MIT', 'LICENSE-APACHE']) {
  rmSync(path.join(pkgDir, 'wasm', f), { force: true });
}
for (const f of ['nar_tool.js', 'nar_tool_bg.wasm', 'nar_tool.d.ts']) {
  if (!existsSync(path.join(pkgDir, 'wasm', f))) {
    console.error(`build: wasm-pack did not write wasm/${f}`);
    process.exit(1);
  }
}
console.error('build: pkg/wasm/ is ready');
