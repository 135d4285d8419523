// nar-cache-verify: exit codes, usage errors, error messages (as nar-tool's), the text, GitHub
// and JUnit outputs, HTTP caches, progress only on a TTY.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  CACHES, CLI, CORPUS_KEY, STORE_PATHS, copyCache, haveCommand, narFile, narinfoFile, nativeBin, removeField, run, runCli,
  serveDir, setField, storePath, syntheticCache, tempDir,
} from '../tools/test-helpers.js';
import { createServer } from 'node:http';

const LIBDEMO = storePath('libdemo-1.0');
const TOP = storePath('closure-top');
const FILE = storePath('single-file');

test('exit codes: 0 clean, 1 corrupt, 2 signatures, 4 a failed check, their sum; 0 with only warnings', async () => {
  const clean = await runCli(['--trusted-key', CORPUS_KEY, path.join(CACHES, 'xz')]);
  assert.equal(clean.code, 0);
  assert.equal(clean.stdout, `${path.join(CACHES, 'xz')}: 9 paths, 1.3 MiB read, OK: 0 problems, 0 warnings\n`);
  assert.equal(clean.stderr, '', 'no progress when stderr is no TTY');

  const c = copyCache('xz');
  try {
    writeFileSync(path.join(c.dir, 'nar/stray.nar.xz'), 'stray');
    const warned = await runCli(['--trusted-key', CORPUS_KEY, c.dir]);
    assert.equal(warned.code, 0);
    assert.equal(
      warned.stdout,
      `orphan-nar nar/stray.nar.xz: no narinfo points to this file (a warning)\n${c.dir}: 9 paths, 1.3 MiB read, OK: 0 problems, 1 warnings\n`,
    );
    unlinkSync(narFile(c.dir, LIBDEMO));
    assert.equal((await runCli([c.dir])).code, 1);
    removeField(c.dir, TOP, 'Sig');
    assert.equal((await runCli([c.dir])).code, 1, 'signatures are not checked without a key');
    assert.equal((await runCli(['--trusted-key', CORPUS_KEY, c.dir])).code, 3);
    setField(c.dir, FILE, 'Compression', 'lz4');
    const all = await runCli(['--trusted-key', CORPUS_KEY, c.dir]);
    assert.equal(all.code, 7);
    assert.match(all.stdout, /FAILED: 3 problems, 1 warnings\n$/);
    const quick = await runCli(['--no-contents', '--trusted-key', CORPUS_KEY, c.dir]);
    assert.equal(quick.code, 3, 'the compression is not looked at without contents');
  } finally {
    c.cleanup();
  }
  const unsigned = await runCli(['--trusted-key', CORPUS_KEY, path.join(CACHES, 'unsigned')]);
  assert.equal(unsigned.code, 2);
  assert.equal(unsigned.stdout.split('\n').filter((l) => l.startsWith('untrusted ')).length, 9);
});

test('usage errors exit 2, as nar-tool verify (clap) does; --help and --version exit 0', async () => {
  for (const args of [[], ['--bogus', 'x'], ['a', 'b'], ['nar-cache-verify', 'a', 'b'], ['--trusted-key'], ['--jobs', 'many', 'x']]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^error: /, args.join(' '));
    assert.match(r.stderr, /Usage: nar-cache-verify \[OPTIONS\] <CACHE>/);
    assert.equal(r.stdout, '');
  }
  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--trusted-key <KEY>/);
  const version = await runCli(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^nar-cache-verify \d+\.\d+\.\d+\n$/);
  // Accepted for compatibility with nar-tool verify.
  assert.equal((await runCli(['-j', '4', '-q', path.join(CACHES, 'none')])).code, 0);
});

test('errors before verifying exit 1 with nar-tool\'s messages (missing cache, bad keys, key files)', async (t) => {
  const dir = tempDir();
  writeFileSync(path.join(dir, 'keys'), `${CORPUS_KEY}\n  bad-key\n`);
  writeFileSync(path.join(dir, 'good-keys'), `${CORPUS_KEY} ${CORPUS_KEY}\n`);
  const cases = [
    [path.join(dir, 'absent')],
    ['--trusted-key', 'bad', path.join(CACHES, 'xz')],
    ['--trusted-key', 'name:AAAA', path.join(CACHES, 'xz')],
    ['--trusted-key-file', path.join(dir, 'absent'), path.join(CACHES, 'xz')],
    ['--trusted-key-file', path.join(dir, 'keys'), path.join(CACHES, 'xz')],
    ['--store-dir', 'relative/store', path.join(CACHES, 'xz')],
    ['--store-dir', '/nix/store/', path.join(CACHES, 'xz')],
  ];
  const bin = nativeBin();
  for (const args of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^nar-cache-verify: error: /);
    if (bin) {
      const native = await run(bin, ['verify', ...args]);
      assert.equal(native.code, 1);
      assert.equal(r.stderr.replace(/^nar-cache-verify/, 'nar-tool'), native.stderr, args.join(' '));
    }
  }
  const ok = await runCli(['--trusted-key-file', path.join(dir, 'good-keys'), path.join(CACHES, 'xz')]);
  assert.equal(ok.code, 0);
  if (!bin) t.diagnostic('no native nar-tool: messages not compared');
});

test('an unreachable URL is one error saying why (connection refused, DNS, TLS), exit 1', async () => {
  // A port nothing listens on.
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  const refused = await runCli([`http://127.0.0.1:${port}/`]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, `nar-cache-verify: error: cannot reach http://127.0.0.1:${port}/: connection refused (ECONNREFUSED)\n`);
  assert.equal(refused.stdout, '');
  // A name that does not resolve (.invalid never does).
  const dns = await runCli(['--json', 'http://nar-tool-test.invalid/cache']);
  assert.equal(dns.code, 1);
  assert.match(dns.stderr, /^nar-cache-verify: error: cannot reach http:\/\/nar-tool-test\.invalid\/cache\/: the host name (does not resolve|could not be resolved now) \(DNS\) \(E\w+\)\n$/);
  assert.equal(dns.stdout, '');
  // TLS spoken to a server that speaks plain HTTP.
  const plain = await serveDir(path.join(CACHES, 'none'));
  try {
    const tls = await runCli([plain.url.replace('http:', 'https:')]);
    assert.equal(tls.code, 1);
    assert.match(tls.stderr, /^nar-cache-verify: error: cannot reach https:\/\/127\.0\.0\.1:\d+\/: TLS: the handshake failed \(ERR_SSL_\w+\)\n$/);
  } finally {
    await plain.close();
  }
});

test('--json prints the report document; --no-contents reads nothing', async () => {
  const r = await runCli(['--json', path.join(CACHES, 'zstd')]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, `{\n  "ok": true,\n  "paths": 9,\n  "checked_bytes": ${JSON.parse(r.stdout).checked_bytes},\n  "problems": []\n}\n`);
  const quick = await runCli(['--json', '--no-contents', path.join(CACHES, 'zstd')]);
  assert.equal(JSON.parse(quick.stdout).checked_bytes, 0);
});

test('--github: an annotation per problem on its narinfo (warnings as ::warning), escaped, then the summary', async () => {
  const c = copyCache('xz');
  try {
    unlinkSync(narFile(c.dir, LIBDEMO));
    removeField(c.dir, TOP, 'Sig');
    writeFileSync(path.join(c.dir, 'nar', 'odd,name:100%\nx.nar'), 'stray');
    // A narinfo name that is no key: judged by its name, which the annotation's file escapes.
    writeFileSync(path.join(c.dir, 'a%b\r\nc.narinfo'), readFileSync(path.join(c.dir, narinfoFile(FILE))));
    const summaryFile = path.join(c.parent, 'step-summary.md');
    const r = await runCli(['--github', '--trusted-key', CORPUS_KEY, c.dir], { env: { ...process.env, GITHUB_STEP_SUMMARY: summaryFile } });
    assert.equal(r.code, 3);
    const lines = r.stdout.split('\n');
    assert.equal(lines.pop(), '');
    const summary = lines.pop();
    assert.ok(summary.startsWith(`${c.dir}: 10 paths, `) && summary.endsWith(' read, FAILED: 3 problems, 1 warnings'), summary);
    const file = (rel) => `${c.dir}/${rel}`.replaceAll('%', '%25').replaceAll(':', '%3A').replaceAll(',', '%2C').replaceAll('\n', '%0A');
    assert.deepEqual(lines, [
      `::error title=missing-nar,file=${file(narinfoFile(LIBDEMO))}::${LIBDEMO}: ${readUrlOf(c.dir, LIBDEMO)} does not exist`,
      `::error title=untrusted,file=${file(narinfoFile(TOP))}::${TOP}: no valid signature by a trusted key (expected one of corpus-public-1, found no signatures)`,
      `::error title=malformed-narinfo,file=${file('a%b\\r\\nc.narinfo')}::a%25b\\r\\nc.narinfo: not a narinfo name (a hash part is 32 nixbase32 characters); not read`,
      `::warning title=orphan-nar,file=${file('nar/odd,name:100%\\nx.nar')}::nar/odd,name:100%25\\nx.nar: no narinfo points to this file (a warning)`,
    ]);
    // The step summary: a table by kind, appended.
    const md = readFileSync(summaryFile, 'utf8');
    assert.ok(md.startsWith(`### nar-cache-verify \`${c.dir}\`: FAILED\n\n`), md);
    assert.match(md, /\| `missing-nar` \| 1 \| `\/nix\/store\/\w{32}-libdemo-1\.0-public` \|\n/);
    assert.match(md, /\| `untrusted` \| 1 \| /);
    assert.match(md, /\| `orphan-nar` \(a warning\) \| 1 \| `nar\/odd,name:100%\\nx\.nar` \|\n$/);
    const again = await runCli(['--github', c.dir], { env: { ...process.env, GITHUB_STEP_SUMMARY: summaryFile } });
    assert.equal(again.code, 1);
    assert.equal(readFileSync(summaryFile, 'utf8').split('### nar-cache-verify').length, 3, 'appended, as GitHub wants');
  } finally {
    c.cleanup();
  }
});

test('--github with one wrong key: 10 annotations, the last saying how many more, the rest as lines', async () => {
  const dir = tempDir();
  const cache = syntheticCache(path.join(dir, 'cache'), 60);
  const r = await runCli(['--github', '--trusted-key', CORPUS_KEY, cache], { env: { ...process.env, GITHUB_STEP_SUMMARY: '' } });
  assert.equal(r.code, 2);
  const lines = r.stdout.trimEnd().split('\n');
  const errors = lines.filter((l) => l.startsWith('::error '));
  assert.equal(errors.length, 10);
  assert.match(errors[0], new RegExp(`^::error title=untrusted,file=${cache.replaceAll(':', '%3A')}/\\w{32}\\.narinfo::/nix/store/\\w{32}-`));
  assert.equal(errors[9], '::error title=51 more problems::51 more problems not annotated (GitHub shows 10 per step): listed in the log');
  assert.equal(lines.filter((l) => l.startsWith('untrusted /nix/store/')).length, 51);
  assert.match(lines.at(-1), /: 60 paths, .* FAILED: 60 problems, 0 warnings$/);
});

test('--json and --github together: the JSON on stdout, the annotations on stderr', async () => {
  const c = copyCache('xz');
  try {
    unlinkSync(narFile(c.dir, LIBDEMO));
    const summaryFile = path.join(c.parent, 'summary.md');
    const r = await runCli(['--json', '--github', c.dir], { env: { ...process.env, GITHUB_STEP_SUMMARY: summaryFile } });
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout);
    assert.equal(report.problems[0].kind, 'missing-nar');
    assert.match(r.stderr, /^::error title=missing-nar,file=.*\.narinfo::\/nix\/store\/\w{32}-libdemo-1\.0-public: nar\/.* does not exist\n.*: 9 paths, .* FAILED: 1 problems, 0 warnings\n$/);
    assert.match(readFileSync(summaryFile, 'utf8'), /\| `missing-nar` \| 1 \|/);
  } finally {
    c.cleanup();
  }
});

test('escape sequences from a hostile cache never reach the output as they are (text, GitHub, JUnit)', async () => {
  const c = copyCache('xz');
  try {
    const evil = 'nar/x\r\u001b[2K\u001b[1Aall good\u009b2J\n';
    setField(c.dir, LIBDEMO, 'URL', evil.replace('\n', ''));
    writeFileSync(path.join(c.dir, `nar/\u001b]0;pwned\u0007.nar`), 'stray');
    for (const args of [[], ['--github'], ['--junit', path.join(c.parent, 'r.xml')]]) {
      const r = await runCli([...args, c.dir]);
      assert.equal(r.code, 1, args.join(' '));
      const out = r.stdout + (args[0] === '--junit' ? readFileSync(path.join(c.parent, 'r.xml'), 'utf8') : '');
      assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, `${args.join(' ')}: ${JSON.stringify(out)}`);
      assert.ok(out.includes('nar/x\\r\\u{1b}[2K\\u{1b}[1Aall good\\u{9b}2J'), `${args.join(' ')}: ${out}`);
      assert.ok(out.includes('nar/\\u{1b}]0;pwned\\u{7}.nar'), out);
    }
    // The native CLI prints the same escaped lines (the one renderer).
    const bin = nativeBin();
    if (bin) {
      const native = await run(bin, ['verify', c.dir]);
      assert.equal(native.stdout, (await runCli([c.dir])).stdout);
    }
  } finally {
    c.cleanup();
  }
});

function readUrlOf(dir, p) {
  return readFileSync(path.join(dir, narinfoFile(p)), 'utf8').match(/^URL: (.*)$/m)[1];
}

// A small XML reader, enough for the JUnit reports written here (no dependencies).
function parseXml(text) {
  const decode = (s) =>
    s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_, e) =>
      e[0] === '#' ? String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : Number(e.slice(1))) : { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e],
    );
  assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"\?>\n/);
  const root = { name: '#root', attrs: {}, children: [], text: '' };
  const stack = [root];
  const re = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w.-]+="[^"]*")*)\s*(\/?)>|([^<]+)|(<\?[^>]*\?>)/gy;
  let m;
  while ((m = re.exec(text.slice(text.indexOf('\n') + 1))) !== null) {
    const [, close, name, attrText, selfClose, chars] = m;
    const top = stack[stack.length - 1];
    if (chars !== undefined) {
      top.text += decode(chars);
    } else if (close) {
      assert.equal(top.name, name, 'balanced tags');
      stack.pop();
    } else if (name) {
      const attrs = {};
      for (const [, k, v] of attrText.matchAll(/([\w.-]+)="([^"]*)"/g)) attrs[k] = decode(v);
      const el = { name, attrs, children: [], text: '' };
      top.children.push(el);
      if (!selfClose) stack.push(el);
    }
    if (re.lastIndex >= text.length) break;
  }
  assert.equal(stack.length, 1, 'every tag closed');
  return root.children[0];
}

test('--junit FILE: a testcase per store path and one for the cache, failures with kind and message', async () => {
  const c = copyCache('xz');
  const out = path.join(c.parent, 'reports');
  mkdirSync(out);
  try {
    const clean = await runCli(['--junit', path.join(out, 'clean.xml'), '--trusted-key', CORPUS_KEY, c.dir]);
    assert.equal(clean.code, 0);
    const suites = parseXml(readFileSync(path.join(out, 'clean.xml'), 'utf8'));
    assert.equal(suites.name, 'testsuites');
    assert.equal(suites.attrs.tests, '10');
    assert.equal(suites.attrs.failures, '0');
    const suite = suites.children[0];
    const cases = suite.children.filter((e) => e.name === 'testcase');
    assert.deepEqual(cases.map((e) => e.attrs.name), [c.dir, ...[...STORE_PATHS].sort((a, b) => (narinfoFile(a) < narinfoFile(b) ? -1 : 1))]);
    assert.ok(cases.every((e) => e.children.length === 0));

    unlinkSync(narFile(c.dir, LIBDEMO));
    removeField(c.dir, TOP, 'Sig');
    setField(c.dir, FILE, 'Compression', 'lz4');
    writeFileSync(path.join(c.dir, 'nix-cache-info'), 'StoreDir: /other & <store>\n');
    writeFileSync(path.join(c.dir, 'nar/stray.nar.xz'), 'stray');
    writeFileSync(path.join(c.dir, '00000000000000000000000000000000.narinfo'), 'garbage "<&>"\n');
    const bad = await runCli(['--junit', path.join(out, 'bad.xml'), '--json', '--trusted-key', CORPUS_KEY, c.dir]);
    assert.equal(bad.code, 7);
    const report = JSON.parse(bad.stdout);
    const junit = parseXml(readFileSync(path.join(out, 'bad.xml'), 'utf8'));
    const tc = Object.fromEntries(junit.children[0].children.filter((e) => e.name === 'testcase').map((e) => [e.attrs.name, e]));
    assert.equal(Object.keys(tc).length, 11, 'the cache, 9 store paths, the garbage narinfo');
    const failure = (name) => tc[name].children.find((e) => e.name === 'failure' || e.name === 'error');
    const problem = (p, kind) => report.problems.find((x) => x.path === p && x.kind === kind);
    assert.equal(failure(LIBDEMO).name, 'failure');
    assert.equal(failure(LIBDEMO).attrs.type, 'missing-nar');
    assert.equal(failure(LIBDEMO).attrs.message, problem(LIBDEMO, 'missing-nar').message);
    assert.equal(failure(TOP).attrs.type, 'untrusted');
    assert.equal(failure(FILE).name, 'error', 'a check that could not run');
    assert.equal(failure(FILE).attrs.type, 'check-failed');
    const cacheCase = tc[c.dir];
    assert.equal(failure(c.dir).attrs.type, 'bad-cache-info');
    assert.match(failure(c.dir).attrs.message, /other & <store>/, 'escaped and read back');
    assert.match(cacheCase.children.find((e) => e.name === 'system-out').text, /^orphan-nar nar\/stray.nar.xz: /);
    assert.equal(failure('00000000000000000000000000000000.narinfo').attrs.type, 'malformed-narinfo');
    assert.equal(junit.attrs.failures, '4');
    assert.equal(junit.attrs.errors, '1');
    // Written atomically: no temporary file is left beside it.
    assert.deepEqual(readdirSync(out).sort(), ['bad.xml', 'clean.xml']);

    // A report that cannot be written is an error before verifying (nothing is read or printed).
    const unwritable = await runCli(['--junit', path.join(out, 'no-such-dir', 'r.xml'), path.join(CACHES, 'none')]);
    assert.equal(unwritable.code, 1);
    assert.equal(unwritable.stderr, `nar-cache-verify: error: writing ${path.join(out, 'no-such-dir', 'r.xml')}: No such file or directory (os error 2)\n`);
    assert.equal(unwritable.stdout, '');
    const directory = await runCli(['--junit', out, path.join(CACHES, 'none')]);
    assert.equal(directory.code, 1);
    assert.equal(directory.stderr, `nar-cache-verify: error: writing ${out}: Is a directory (os error 21)\n`);
    const summary = await runCli(['--github', path.join(CACHES, 'none')], { env: { ...process.env, GITHUB_STEP_SUMMARY: path.join(out, 'no-such-dir', 's.md') } });
    assert.equal(summary.code, 1);
    assert.match(summary.stderr, /^nar-cache-verify: error: writing .*s\.md: No such file or directory \(os error 2\)\n$/);
    assert.equal(summary.stdout, '');
    assert.deepEqual(readdirSync(out).sort(), ['bad.xml', 'clean.xml'], 'no temporary file left');
  } finally {
    c.cleanup();
  }
});

test('an http(s) cache: the listing of nar-tool serve, or --root for the closure of a path', async () => {
  const server = await serveDir(path.join(CACHES, 'xz'), { listing: true });
  try {
    const r = await runCli(['--trusted-key', CORPUS_KEY, server.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${server.url}: 9 paths, 1.3 MiB read, OK: 0 problems, 0 warnings\n`);
  } finally {
    await server.close();
  }
  const plain = await serveDir(path.join(CACHES, 'xz'));
  try {
    const none = await runCli(['--json', plain.url]);
    assert.equal(none.code, 4);
    assert.match(JSON.parse(none.stdout).problems[0].message, /publishes no list of its narinfos/);
    const r = await runCli(['--json', '--root', TOP, '--trusted-key', CORPUS_KEY, plain.url]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(JSON.parse(r.stdout).paths >= 4);
    assert.equal((await runCli(['--root', TOP, path.join(CACHES, 'xz')])).code, 2, '--root is for URLs');
  } finally {
    await plain.close();
  }
});

test('progress goes to stderr only when it is a TTY (and never with --json or --quiet)', async (t) => {
  if (!haveCommand('script')) return t.skip('no script(1) to give a TTY');
  const dir = path.join(CACHES, 'xz');
  const shell = (args) => `node ${CLI} ${args} ${dir} 2>&1 >/dev/null`;
  const tty = await run('script', ['-qec', shell(''), '/dev/null']);
  assert.equal(tty.code, 0);
  assert.match(tty.stdout, /9\/9 paths/);
  for (const quiet of ['--quiet', '--json']) {
    const r = await run('script', ['-qec', shell(quiet), '/dev/null']);
    assert.equal(r.stdout.replace(/\r?\n/g, ''), '', quiet);
  }
});
