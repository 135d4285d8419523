// The report renderings (the wasm's renderReport, the one renderer the native CLI uses too):
// byte formatting, GitHub escaping, JUnit escaping, the JSON form.

import test from 'node:test';
import assert from 'node:assert/strict';
import { renderReport } from '../index.js';

const summaryLine = (cache, report) => renderReport(report, cache, 'summary').replace(/\n$/, '');
const textReport = (cache, report) => renderReport(report, cache, 'text');
const jsonReport = (report) => renderReport(report, '', 'json');
const githubAnnotations = (report) => renderReport(report, '', 'github').replace(/[^\n]*\n$/, '');
const junitXml = ({ cache, report, paths, seconds, timestamp }) =>
  renderReport(report, cache, 'junit', { paths, seconds, timestamp: timestamp.getTime() / 1000 });
/** Bytes as the summary line gives them. */
const humanBytes = (n) => summaryLine('c', { ok: true, paths: 0, checked_bytes: n, problems: [] }).match(/, (.*) read,/)[1];

test('bytes: nar-tool\'s units and Rust\'s {:.1} (ties to even on the exact value)', () => {
  const cases = [
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1280, '1.2 KiB'], // 1.25: a tie, to even
    [1792, '1.8 KiB'], // 1.75: a tie, to even
    [1331, '1.3 KiB'],
    [1536, '1.5 KiB'],
    [3 * 1024 + 51, '3.0 KiB'], // 3.0498
    [3 * 1024 + 52, '3.1 KiB'], // 3.0508
    [1048575, '1024.0 KiB'], // under a MiB: stays KiB, rounds up
    [1048576, '1.0 MiB'],
    [1406752, '1.3 MiB'],
    [1.5 * 2 ** 30, '1.5 GiB'],
    [2 ** 40, '1.0 TiB'],
    [2 ** 50, '1024.0 TiB'],
    [2.25 * 2 ** 40, '2.2 TiB'],
  ];
  for (const [n, s] of cases) assert.equal(humanBytes(n), s, String(n));
});

const report = {
  ok: false,
  paths: 2,
  checked_bytes: 2048,
  problems: [
    { kind: 'missing-nar', path: '/nix/store/aaaa-x', message: 'nar/x.nar.xz does not exist' },
    { kind: 'check-failed', path: '/nix/store/bbbb-y,z', message: '100% odd:\r\nline two' },
    { kind: 'orphan-nar', path: 'nar/a:b,c', message: 'no narinfo points to this file (a warning)' },
  ],
};

test('text and summary as nar-tool verify prints them', () => {
  assert.equal(summaryLine('c', report), 'c: 2 paths, 2.0 KiB read, FAILED: 2 problems, 1 warnings');
  assert.equal(
    textReport('c', report),
    'missing-nar /nix/store/aaaa-x: nar/x.nar.xz does not exist\n' +
      'check-failed /nix/store/bbbb-y,z: 100% odd:\\r\\nline two\n' +
      'orphan-nar nar/a:b,c: no narinfo points to this file (a warning)\n' +
      'c: 2 paths, 2.0 KiB read, FAILED: 2 problems, 1 warnings\n',
  );
  assert.equal(summaryLine('c', { ok: true, paths: 0, checked_bytes: 0, problems: [] }), 'c: 0 paths, 0 B read, OK: 0 problems, 0 warnings');
});

test('GitHub annotations: control characters escaped, % in data, : , too in properties; file= the narinfo', () => {
  assert.equal(
    githubAnnotations(report),
    '::error title=missing-nar,file=aaaa-x.narinfo::/nix/store/aaaa-x: nar/x.nar.xz does not exist\n' +
      '::error title=check-failed,file=bbbb-y%2Cz.narinfo::/nix/store/bbbb-y,z: 100%25 odd:\\r\\nline two\n' +
      '::warning title=orphan-nar,file=nar/a%3Ab%2Cc::nar/a:b,c: no narinfo points to this file (a warning)\n',
  );
  const inCache = renderReport(report, './ci/cache', 'github');
  assert.match(inCache, /^::error title=missing-nar,file=ci\/cache\/aaaa-x\.narinfo::/);
  // Over HTTP there is no file of the repository to point at.
  assert.doesNotMatch(renderReport(report, 'https://cache.example.org/', 'github'), /file=/);
});

test('GitHub: at most 10 annotations per level, the tenth says how many more, the rest as lines; a step summary', () => {
  const many = (n, kind) => Array.from({ length: n }, (_, i) => ({ kind, path: `/nix/store/${String(i).padStart(32, '0')}-p`, message: `m${i}` }));
  const big = { ok: false, paths: 2006, checked_bytes: 0, problems: many(2006, 'untrusted') };
  const out = renderReport(big, 'cache', 'github').split('\n');
  const errors = out.filter((l) => l.startsWith('::error '));
  assert.equal(errors.length, 10);
  assert.equal(errors[9], '::error title=1997 more problems::1997 more problems not annotated (GitHub shows 10 per step): listed in the log');
  assert.equal(out.filter((l) => l.startsWith('untrusted ')).length, 1997);
  const summary = renderReport(big, 'cache', 'github-summary');
  assert.equal(
    summary,
    '### nar-cache-verify `cache`: FAILED\n\n`cache: 2006 paths, 0 B read, FAILED: 2006 problems, 0 warnings`\n\n' +
      `| Kind | Count | First |\n| --- | ---: | --- |\n| \`untrusted\` | 2006 | \`/nix/store/${'0'.repeat(32)}-p\` |\n`,
  );
});

test('JSON: serde_json\'s pretty form, keys in the Rust order whatever the input order', () => {
  const shuffled = {
    problems: [{ message: 'm\u0001"\\', path: 'p', kind: 'check-failed' }],
    checked_bytes: 5,
    paths: 1,
    ok: false,
  };
  assert.equal(
    jsonReport(shuffled),
    '{\n  "ok": false,\n  "paths": 1,\n  "checked_bytes": 5,\n  "problems": [\n    {\n      "kind": "check-failed",\n      "path": "p",\n      "message": "m\\u0001\\"\\\\"\n    }\n  ]\n}\n',
  );
  assert.equal(jsonReport({ ok: true, paths: 0, checked_bytes: 0, problems: [] }), '{\n  "ok": true,\n  "paths": 0,\n  "checked_bytes": 0,\n  "problems": []\n}\n');
});

test('JUnit: escaping of text and attributes, control characters made visible, counts', () => {
  const xml = junitXml({
    cache: 'a "cache" <&>',
    report: {
      ...report,
      problems: [...report.problems, { kind: 'malformed-narinfo', path: 'bad\u0001.narinfo', message: "it's <bad> & \u0000" }],
    },
    paths: ['/nix/store/aaaa-x', '/nix/store/bbbb-y,z', 'bad\u0001.narinfo', '/nix/store/cccc-fine'],
    seconds: 1.5,
    timestamp: new Date(0),
  });
  assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="nar-cache-verify" tests="5" failures="2" errors="1" time="1.500">\n/);
  assert.match(xml, /<testsuite name="a &quot;cache&quot; &lt;&amp;&gt;" tests="5" failures="2" errors="1" skipped="0" time="1.500" timestamp="1970-01-01T00:00:00">/);
  assert.match(xml, /<testcase classname="a &quot;cache&quot; &lt;&amp;&gt;" name="\/nix\/store\/cccc-fine"\/>/);
  assert.match(xml, /name="bad\\u\{1\}.narinfo">\n {6}<failure type="malformed-narinfo" message="it&apos;s &lt;bad&gt; &amp; \\u\{0\}">/);
  assert.match(xml, /<error type="check-failed" message="100% odd:\\r\\nline two">check-failed \/nix\/store\/bbbb-y,z: 100% odd:\\r\\nline two<\/error>/);
  assert.match(xml, /<system-out>orphan-nar nar\/a:b,c: no narinfo points to this file \(a warning\)<\/system-out>/);
  assert.doesNotMatch(xml, /[\u0000-\u0009\u000b-\u001f]/, 'no control character but the line ends');
});

test('JSON and JS: expected and found only when the judgment compared two values', () => {
  const compared = { kind: 'file-size-mismatch', path: '/nix/store/aaaa-x', message: 'nar/x: FileSize is 4, the file has 5 bytes', expected: '4', found: '5' };
  const r = { ok: false, paths: 1, checked_bytes: 5, problems: [compared, report.problems[0]] };
  assert.equal(
    jsonReport(r),
    '{\n  "ok": false,\n  "paths": 1,\n  "checked_bytes": 5,\n  "problems": [\n    {\n      "kind": "file-size-mismatch",\n      "path": "/nix/store/aaaa-x",\n      "message": "nar/x: FileSize is 4, the file has 5 bytes",\n      "expected": "4",\n      "found": "5"\n    },\n' +
      '    {\n      "kind": "missing-nar",\n      "path": "/nix/store/aaaa-x",\n      "message": "nar/x.nar.xz does not exist"\n    }\n  ]\n}\n',
  );
  // The text stays the message alone.
  assert.equal(textReport('c', r).split('\n')[0], 'file-size-mismatch /nix/store/aaaa-x: nar/x: FileSize is 4, the file has 5 bytes');
  assert.throws(() => renderReport(r, 'c', 'yaml'), /unknown report format "yaml"/);
});
