// Native vs wasm: each damaged cache of the damage table (tests/fixtures/damage-table.json, which
// tests/it/verify.rs checks too) is verified by the native `nar-tool verify` and by
// `nar-cache-verify` (the wasm build, through dirSource) over the same files; their JSON reports,
// text outputs and exit codes must be identical, byte for byte (decoder error texts included).
// Each damage is also checked to give the problems and exit status its row says.

import test from 'node:test';
import assert from 'node:assert/strict';
import { CLI, CORPUS_KEY, copyCache, nativeBin, run } from '../tools/test-helpers.js';
import { applyDamage, damageRows, expectedProblems } from '../tools/damage.js';

const bin = nativeBin();

/** Both verifiers; with `shared`, the wasm's paths are shared by three threads however few. */
async function bothVerify(dir, args, shared) {
  const wasmArgs = shared ? ['--threads', '3', ...args] : args;
  const env = shared ? { ...process.env, NAR_TOOL_TEST_SHARE: 'from1' } : process.env;
  const [native, wasm] = await Promise.all([
    run(bin, ['verify', '--jobs', '1', ...args, dir]),
    run(process.execPath, [CLI, ...wasmArgs, dir], { env }),
  ]);
  return { native, wasm };
}

test('native and wasm verifiers agree on every damaged cache (JSON, text, exit codes; also --no-contents; every other one shared by threads)', { timeout: 600_000 }, async (t) => {
  if (!bin) return t.skip('no native nar-tool: cargo build, or set NAR_TOOL_BIN');
  const rows = damageRows();
  assert.ok(rows.length >= 75);
  const failures = [];
  for (const [i, row] of rows.entries()) {
    const { name, exit } = row;
    // Every other row with its paths shared between worker threads.
    const shared = i % 2 === 1;
    const expected = expectedProblems(row);
    // Two levels down, so that `../../x` from the cache root is still inside the temporary directory.
    const c = copyCache(row.cache, 'a/b/cache');
    try {
      await applyDamage(row, c.dir);
      const keyArgs = row.key ? ['--trusted-key', CORPUS_KEY] : [];
      for (const mode of [['--json'], [], ['--json', '--no-contents']]) {
        const args = [...mode, ...keyArgs, ...row.args];
        const { native, wasm } = await bothVerify(c.dir, args, shared);
        const label = `${name} [${mode.join(' ') || 'text'}${shared ? ', shared' : ''}]`;
        if (native.code !== wasm.code) failures.push(`${label}: exit native ${native.code}, wasm ${wasm.code}\n${native.stderr}${wasm.stderr}`);
        if (native.stdout !== wasm.stdout) {
          failures.push(`${label}: outputs differ\n--- native\n${native.stdout}--- wasm\n${wasm.stdout}${wasm.stderr}`);
        }
        if (!row.report) {
          // Refused before verifying: the same error, no report.
          const wasmStderr = wasm.stderr.replace(/^nar-cache-verify/, 'nar-tool');
          if (native.code !== exit || native.stdout !== '' || wasmStderr !== native.stderr || !/^nar-tool: error: /.test(native.stderr)) {
            failures.push(`${label}: expected no report, exit ${exit} and the same error\n--- native ${native.code}\n${native.stdout}${native.stderr}--- wasm ${wasm.code}\n${wasm.stdout}${wasm.stderr}`);
          }
          continue;
        }
        if (mode.includes('--json') && !/^\{\n {2}"ok": (true|false),\n/.test(native.stdout)) {
          failures.push(`${label}: no report from nar-tool: ${native.stderr}`);
        }
        if (mode.length === 1 && mode[0] === '--json') {
          // The damage does what its row says (as tests/it/verify.rs checks too).
          let got;
          try {
            got = JSON.parse(native.stdout).problems.map((p) => [p.kind, p.path]);
            if (expected) assert.deepStrictEqual(got, expected);
            if (exit !== null) assert.equal(native.code, exit);
          } catch (e) {
            failures.push(`${label}: the damage gives ${JSON.stringify(got)} exit ${native.code}, expected ${JSON.stringify(expected)} exit ${exit}`);
          }
        }
      }
    } finally {
      c.cleanup();
    }
  }
  assert.deepEqual(failures, []);
});

test('--max-problems: native and wasm list the same first problems and count the same others', { timeout: 120_000 }, async (t) => {
  if (!bin) return t.skip('no native nar-tool: cargo build, or set NAR_TOOL_BIN');
  const row = damageRows().find((r) => r.name === 'several-at-once');
  const c = copyCache(row.cache, 'a/b/cache');
  try {
    await applyDamage(row, c.dir);
    const all = await bothVerify(c.dir, ['--json', '--trusted-key', CORPUS_KEY]);
    const found = JSON.parse(all.native.stdout).problems;
    assert.equal(found.length, 4);
    for (const limit of ['1', '3', '0']) {
      for (const mode of [['--json'], []]) {
        const { native, wasm } = await bothVerify(c.dir, [...mode, '--trusted-key', CORPUS_KEY, '--max-problems', limit]);
        const label = `--max-problems ${limit} [${mode.join(' ') || 'text'}]`;
        assert.equal(wasm.stdout, native.stdout, label);
        // Problems not listed still count: the same exit code as with every one listed.
        assert.equal(native.code, all.native.code, label);
        assert.equal(wasm.code, all.native.code, label);
      }
      const { native } = await bothVerify(c.dir, ['--json', '--trusted-key', CORPUS_KEY, '--max-problems', limit]);
      const report = JSON.parse(native.stdout);
      const listed = limit === '0' ? found.length : Number(limit);
      assert.deepEqual(report.problems, found.slice(0, listed), limit);
      const omitted = Object.values(report.omitted_problems ?? {}).reduce((a, b) => a + b, 0);
      assert.equal(omitted, found.length - listed, limit);
    }
    const text = (await bothVerify(c.dir, ['--trusted-key', CORPUS_KEY, '--max-problems', '1'])).wasm.stdout;
    assert.match(text, /^omitted 3 more problems \(.*\): only the first 1 are listed; --max-problems N lists more, 0 every one$/m);
    assert.match(text, /FAILED: 3 problems, 1 warnings\n$/);
    // GitHub annotations (nar-cache-verify's own): the one listed, then the same line.
    const env = { ...process.env };
    delete env.GITHUB_STEP_SUMMARY;
    const github = await run(process.execPath, [CLI, '--github', '--trusted-key', CORPUS_KEY, '--max-problems', '1', c.dir], { env });
    assert.equal(github.code, all.native.code);
    assert.match(github.stdout, /^::error title=missing-nar,.*\nomitted 3 more problems .*\n.*FAILED: 3 problems, 1 warnings\n$/);
  } finally {
    c.cleanup();
  }
});

test('--max-problems takes a whole number only', async (t) => {
  const r = await run(process.execPath, [CLI, '--max-problems=x1', '.']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid value 'x1' for '--max-problems <N>'/);
});
