// The READMEs' commands for the CI plugin, run verbatim by bash in empty directories: the packed
// tarball installed with npm and run with npx, and `npx nar-tool@<version> nar-cache-verify …`
// fetched from a registry — a local one on loopback serving the packed tarball, so nothing
// leaves the machine.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { copyFileSync, cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CACHES, CORPUS_KEY, PKG, REPO, run, tempDir } from '../tools/test-helpers.js';

const VERSION = JSON.parse(readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;

/** The lines of a README that hold `needle`, as they are written (trimmed). */
function linesWith(readme, needle) {
  return readFileSync(readme, 'utf8')
    .split('\n')
    .filter((l) => l.includes(needle))
    .map((l) => l.trim());
}

/** A registry on loopback with one package: the tarball, under its name and version. */
async function registry(tarball) {
  const bytes = readFileSync(tarball);
  const manifest = JSON.parse(readFileSync(path.join(PKG, 'package.json'), 'utf8'));
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const base = `http://${req.headers.host}`;
    if (url.pathname === `/${manifest.name}`) {
      const version = {
        ...manifest,
        _id: `${manifest.name}@${manifest.version}`,
        dist: {
          tarball: `${base}/${manifest.name}/-/${path.basename(tarball)}`,
          integrity: `sha512-${createHash('sha512').update(bytes).digest('base64')}`,
          shasum: createHash('sha1').update(bytes).digest('hex'),
        },
      };
      delete version.devDependencies;
      delete version.scripts;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name: manifest.name, 'dist-tags': { latest: manifest.version }, versions: { [manifest.version]: version } }));
    } else if (url.pathname === `/${manifest.name}/-/${path.basename(tarball)}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
      res.end(bytes);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) };
}

/** npm's settings for a run that touches nothing of the user's and nothing but `registryUrl`. */
function npmEnv(home, registryUrl, extra = {}) {
  writeFileSync(path.join(home, '.npmrc'), '');
  return {
    PATH: process.env.PATH,
    HOME: home,
    npm_config_userconfig: path.join(home, '.npmrc'),
    npm_config_cache: path.join(home, '.npm'),
    npm_config_registry: registryUrl,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    npm_config_loglevel: 'error',
    ...extra,
  };
}

/** An empty directory holding only a copy of a corpus cache at ./cache and its public key. */
function project() {
  const dir = tempDir('nar-tool-readme-');
  cpSync(path.join(CACHES, 'xz'), path.join(dir, 'cache'), { recursive: true });
  writeFileSync(path.join(dir, 'cache-key.public'), `${CORPUS_KEY}\n`);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('the READMEs\' npm and npx lines, verbatim, in empty directories (offline: a loopback registry)', { timeout: 600_000 }, async () => {
  const home = tempDir('nar-tool-npm-home-');
  const packDir = tempDir('nar-tool-packed-');
  const packed = await run('npm', ['pack', '--pack-destination', packDir], { cwd: PKG, env: npmEnv(home, 'http://127.0.0.1:9/') });
  assert.equal(packed.code, 0, packed.stderr);
  const tarball = path.join(packDir, readdirSync(packDir).find((f) => f.endsWith('.tgz')));
  assert.equal(path.basename(tarball), `nar-tool-${VERSION}.tgz`);
  const reg = await registry(tarball);
  try {
    // The main README: install the tarball from ./pkg/, then npx the binary.
    const [install] = linesWith(path.join(REPO, 'README.md'), 'npm install ./pkg/nar-tool-');
    const [verify] = linesWith(path.join(REPO, 'README.md'), 'npx nar-cache-verify ./cache');
    assert.ok(install.includes(`nar-tool-${VERSION}.tgz`), `README.md names the packed version: ${install}`);
    const p = project();
    try {
      mkdirSync(path.join(p.dir, 'pkg'));
      copyFileSync(tarball, path.join(p.dir, 'pkg', path.basename(tarball)));
      const env = npmEnv(home, reg.url);
      const i = await run('bash', ['-euc', install], { cwd: p.dir, env });
      assert.equal(i.code, 0, `${install}\n${i.stderr}`);
      const v = await run('bash', ['-euc', verify], { cwd: p.dir, env });
      assert.equal(v.code, 0, `${verify}\n${v.stdout}${v.stderr}`);
      assert.equal(v.stdout, './cache: 9 paths, 1.3 MiB read, OK: 0 problems, 0 warnings\n');
      assert.match(readFileSync(path.join(p.dir, 'verify.xml'), 'utf8'), /<testsuites name="nar-cache-verify" tests="10" failures="0"/);
    } finally {
      p.cleanup();
    }

    // pkg/README.md's GitHub Actions step (`${{ vars.CACHE_PUBLIC_KEY }}` is GitHub's to fill in),
    // and the forms its text gives, each in a fresh empty directory with nothing installed.
    const [step] = linesWith(path.join(PKG, 'README.md'), 'run: npx --yes nar-tool@');
    const readme = readFileSync(path.join(PKG, 'README.md'), 'utf8');
    const commands = [
      step.replace(/^run: /, '').replace('${{ vars.CACHE_PUBLIC_KEY }}', '$(cat cache-key.public)'),
      ...[...readme.matchAll(/`(npx (?:-p )?nar-tool@[^`]*nar-cache-verify) …`/g)].map((m) => `${m[1]} ./cache --trusted-key "$(cat cache-key.public)"`),
    ];
    assert.equal(commands.length, 3, commands.join('\n'));
    for (const command of commands) {
      assert.ok(command.includes(`nar-tool@${VERSION} `), `pkg/README.md names the packed version: ${command}`);
      const q = project();
      try {
        const summary = path.join(q.dir, 'step-summary.md');
        const r = await run('bash', ['-euc', command], { cwd: q.dir, env: npmEnv(home, reg.url, { GITHUB_STEP_SUMMARY: summary }) });
        assert.equal(r.code, 0, `${command}\n${r.stdout}${r.stderr}`);
        assert.equal(r.stdout, './cache: 9 paths, 1.3 MiB read, OK: 0 problems, 0 warnings\n', command);
        if (command.includes('--github')) {
          assert.match(readFileSync(summary, 'utf8'), /^### nar-cache-verify `\.\/cache`: OK\n/);
          assert.match(readFileSync(path.join(q.dir, 'cache-report.xml'), 'utf8'), /tests="10" failures="0"/);
        }
        // A damaged cache fails the step, with annotations on the narinfo.
        writeFileSync(path.join(q.dir, 'cache', readdirSync(path.join(q.dir, 'cache')).find((f) => f.endsWith('.narinfo'))), 'garbage\n');
        const bad = await run('bash', ['-euc', command], { cwd: q.dir, env: npmEnv(home, reg.url, { GITHUB_STEP_SUMMARY: summary }) });
        assert.equal(bad.code, 1, command);
      } finally {
        q.cleanup();
      }
    }
  } finally {
    await reg.close();
    rmSync(home, { recursive: true, force: true });
    rmSync(packDir, { recursive: true, force: true });
  }
});
