// `npm pack` gives a tarball that installs into an empty directory (no Rust, no network: the
// package has no dependencies) and runs: the CLI through npx, the API through `import`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CACHES, CORPUS_KEY, PKG, run, tempDir } from '../tools/test-helpers.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

test('npm pack: the tarball holds the wasm, the JS, the types and the README, nothing else', { timeout: 120_000 }, async () => {
  const r = await run(npm, ['pack', '--dry-run', '--json'], { cwd: PKG, env });
  assert.equal(r.code, 0, r.stderr);
  const files = JSON.parse(r.stdout)[0].files.map((f) => f.path).sort();
  for (const f of ['package.json', 'README.md', 'index.js', 'browser.js', 'index.d.ts', 'bin/nar-cache-verify.js', 'lib/api.js',
    'lib/dir-source.js', 'lib/http-source.js', 'lib/public.js', 'lib/cache-index.js', 'wasm/nar_tool.js', 'wasm/nar_tool_bg.wasm', 'wasm/nar_tool.d.ts']) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  assert.deepEqual(files.filter((f) => /^(test|tools|node_modules)\//.test(f)), []);
});

test('the packed tarball installs into an empty directory and runs (npx nar-cache-verify, import)', { timeout: 300_000 }, async () => {
  const dir = tempDir('nar-tool-pack-');
  const packed = await run(npm, ['pack', '--pack-destination', dir, '--json'], { cwd: PKG, env });
  assert.equal(packed.code, 0, packed.stderr);
  const tarball = readdirSync(dir).find((f) => /^nar-tool-.*\.tgz$/.test(f));
  assert.ok(tarball);
  const app = path.join(dir, 'app');
  await run('mkdir', [app]);
  writeFileSync(path.join(app, 'package.json'), '{ "name": "app", "version": "1.0.0", "private": true, "type": "module" }\n');
  const installed = await run(npm, ['install', '--offline', '--no-package-lock', path.join(dir, tarball)], { cwd: app, env });
  assert.equal(installed.code, 0, installed.stderr);

  const cache = path.join(CACHES, 'xz');
  const cli = await run('npx', ['--no-install', 'nar-cache-verify', '--trusted-key', CORPUS_KEY, cache], { cwd: app, env });
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stdout, `${cache}: 9 paths, 1.3 MiB read, OK: 0 problems, 0 warnings\n`);
  const bad = await run('npx', ['--no-install', 'nar-cache-verify', '--trusted-key', CORPUS_KEY, path.join(CACHES, 'unsigned')], { cwd: app, env });
  assert.equal(bad.code, 2);

  writeFileSync(
    path.join(app, 'check.js'),
    `import { verifyCache, exitCode, nixbase32Encode } from 'nar-tool';\n` +
      `const r = await verifyCache(${JSON.stringify(cache)}, { trustedKeys: [${JSON.stringify(CORPUS_KEY)}] });\n` +
      `console.log(r.ok, r.paths, exitCode(r), nixbase32Encode(new Uint8Array(20)));\n`,
  );
  const api = await run(process.execPath, ['check.js'], { cwd: app, env });
  assert.equal(api.code, 0, api.stderr);
  assert.equal(api.stdout, `true 9 0 ${'0'.repeat(32)}\n`);
});
