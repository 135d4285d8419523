#!/usr/bin/env node
// nar-cache-verify: `nar-tool verify` in Node (the same wasm-compiled verifier), for CI jobs
// written in JavaScript. Output and exit codes as `nar-tool verify`: 0 all good (warnings
// included), else the sum of 1 (corrupt or missing), 2 (signatures), 4 (a check could not run);
// 1 for an error before verifying (unreadable key file, missing or unreachable cache, an output
// that cannot be written); 2 for usage.
//
// `npx nar-tool nar-cache-verify CACHE` runs this, the package's one binary, with its own name
// as the first argument: a first argument `nar-cache-verify` followed by the cache is skipped.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { verifyCacheReport, dirSource, httpSource, parsePublicKey, parseNarInfo } from '../index.js';
import { ioError, rustDebug } from '../lib/dir-source.js';
import { appendOutput, atomicOutput } from '../lib/cli-outputs.js';

const NAME = 'nar-cache-verify';
const USAGE = `Usage: ${NAME} [OPTIONS] <CACHE>`;
const HELP = `Verify a Nix binary cache: every hash, size, signature, reference, URL and file.
Exit status: 0 all good (orphan NARs are only warnings), else the sum of 1 (corrupt or missing),
2 (untrusted or bad signatures), 4 (a check could not run)

${USAGE}

Arguments:
  <CACHE>  The cache: a directory, or an http(s) URL

Options:
      --trusted-key <KEY>        A trusted public key \`name:base64\` (repeatable); every path then
                                 needs a valid signature by one
      --trusted-key-file <FILE>  A file holding trusted public keys, one per line or space-separated
                                 (repeatable)
      --no-contents              Do not read NARs: check narinfos, presence and sizes of files,
                                 signatures, references only
      --store-dir <STORE_DIR>    The store directory the cache must be for [default: /nix/store]
      --root <STORE_PATH>        For an http(s) cache without a listing: check the closure of this
                                 store path (repeatable)
      --json                     Print the report as one JSON document
      --github                   Print problems as GitHub Actions annotations (::error/::warning;
                                 10 of each, as GitHub shows, then the rest as lines) and write a
                                 summary table to $GITHUB_STEP_SUMMARY; with --json, the
                                 annotations go to stderr
      --junit <FILE>             Also write a JUnit XML report to FILE
  -j, --jobs <N>                 Paths checked at once by each thread (their reads in flight
                                 while one is checked) [default: 8]
      --threads <N>              Threads sharing the paths of a cache on disk (worker threads;
                                 from 256 paths) [default: the CPUs, at most 4]
      --max-problems <N>         List at most N problems, the first in the report's order; the
                                 others are counted by kind (memory stays bounded however many
                                 there are). 0: list every one [default: 100000]
  -q, --quiet                    No progress
  -h, --help                     Print help
  -V, --version                  Print version
`;

function usageError(message) {
  process.stderr.write(`error: ${message}\n\n${USAGE}\n\nFor more information, try '--help'.\n`);
  process.exit(2);
}

function fail(message) {
  process.stderr.write(`${NAME}: error: ${message}\n`);
  process.exit(1);
}

function parse(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'trusted-key': { type: 'string', multiple: true, default: [] },
        'trusted-key-file': { type: 'string', multiple: true, default: [] },
        'no-contents': { type: 'boolean', default: false },
        'store-dir': { type: 'string', default: '/nix/store' },
        root: { type: 'string', multiple: true, default: [] },
        json: { type: 'boolean', default: false },
        github: { type: 'boolean', default: false },
        junit: { type: 'string' },
        jobs: { type: 'string', short: 'j' },
        threads: { type: 'string' },
        'max-problems': { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    });
  } catch (e) {
    usageError(e.message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const { values } = parsed;
  let { positionals } = parsed;
  // `npx nar-tool nar-cache-verify CACHE`: npx runs the package's binary with the name given.
  if (positionals.length === 2 && positionals[0] === NAME) positionals = positionals.slice(1);
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (values.version) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${NAME} ${pkg.version}\n`);
    process.exit(0);
  }
  if (positionals.length === 0) usageError('the following required arguments were not provided:\n  <CACHE>');
  if (positionals.length > 1) usageError(`unexpected argument '${positionals[1]}' found`);
  if (values.jobs !== undefined && !/^\d+$/.test(values.jobs)) {
    usageError(`invalid value '${values.jobs}' for '--jobs <JOBS>': invalid digit found in string`);
  }
  if (values.threads !== undefined && !/^([1-9]|[1-5][0-9]|6[0-4])$/.test(values.threads)) {
    usageError(`invalid value '${values.threads}' for '--threads <N>': expected a whole number from 1 to 64`);
  }
  if (values['max-problems'] !== undefined && !/^\d{1,9}$/.test(values['max-problems'])) {
    usageError(`invalid value '${values['max-problems']}' for '--max-problems <N>': expected a whole number`);
  }
  return { ...values, cache: positionals[0] };
}

function trustedKeys(opts) {
  const keys = [];
  for (const k of opts['trusted-key']) {
    try {
      parsePublicKey(k); // throws nar-tool's message for a key that does not parse
    } catch (e) {
      fail(`--trusted-key ${rustDebug(k)}: ${e.message}`);
    }
    keys.push(k);
  }
  for (const f of opts['trusted-key-file']) {
    let text;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      fail(`reading ${f}: ${ioError(e).message}`);
    }
    for (const k of text.split(/\s+/).filter(Boolean)) {
      try {
        parsePublicKey(k); // throws nar-tool's message for a key that does not parse
      } catch (e) {
        fail(`${f}: ${e.message}`);
      }
      keys.push(k);
    }
  }
  return keys;
}

function isUrl(s) {
  return /^https?:\/\//i.test(s);
}

/** Records what the verifier reads, to name the JUnit testcases (store paths, as the report does). */
function recording(source) {
  const paths = new Map(); // narinfo file name -> store path (or the file name if unparsable)
  const wrapped = {
    ...source,
    async listNarinfos() {
      const names = await source.listNarinfos();
      for (const n of names) if (!paths.has(n)) paths.set(n, n);
      return names;
    },
    async readFile(rel) {
      const bytes = await source.readFile(rel);
      if (bytes && paths.has(rel)) {
        try {
          paths.set(rel, parseNarInfo(new TextDecoder('utf-8', { fatal: true }).decode(bytes)).storePath);
        } catch {
          // Malformed: the report names it by its file name.
        }
      }
      return bytes;
    },
  };
  return { source: wrapped, paths: () => [...paths.keys()].sort().map((k) => paths.get(k)) };
}

function progress(enabled) {
  if (!enabled) return { enabled, update() {}, done() {} };
  const start = Date.now();
  let last = 0;
  let shown = false;
  const clock = () => {
    const s = Math.floor((Date.now() - start) / 1000);
    const pad = (n) => String(n).padStart(2, '0');
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  };
  return {
    enabled,
    update({ done, total, bytes }) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const width = 30;
      const filled = total > 0 ? Math.round((done / total) * width) : 0;
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      const mib = ((bytes ?? 0) / (1024 * 1024)).toFixed(1);
      process.stderr.write(`\r[${clock()}] ${bar} ${done}/${total} paths, ${mib} MiB read\x1b[K`);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

/** The output files, opened before verifying: an error for one that cannot be written. */
function openOutputs(opts) {
  const outputs = {};
  try {
    if (opts.junit !== undefined) outputs.junit = atomicOutput(opts.junit);
    const summary = process.env.GITHUB_STEP_SUMMARY;
    if (opts.github && summary) outputs.summary = appendOutput(summary);
  } catch (e) {
    outputs.junit?.discard();
    fail(e.message);
  }
  return outputs;
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const keys = trustedKeys(opts);
  let raw;
  if (isUrl(opts.cache)) {
    raw = httpSource(opts.cache, opts.root.length > 0 ? { roots: opts.root } : {});
  } else {
    if (opts.root.length > 0) usageError("'--root' is only for http(s) caches");
    try {
      raw = dirSource(opts.cache);
    } catch (e) {
      fail(`opening cache ${opts.cache}: ${e.message}`);
    }
  }
  const outputs = openOutputs(opts);
  // The JUnit report names its testcases by store path: only then are the narinfos read for it.
  const { source, paths } = opts.junit !== undefined ? recording(raw) : { source: raw, paths: () => [] };
  const bar = progress(!opts.quiet && !opts.json && process.stderr.isTTY === true);
  const started = process.hrtime.bigint();
  let report;
  try {
    // An unreachable URL is one error saying why (verifyCache reaches it first).
    report = await verifyCacheReport(source, {
      trustedKeys: keys,
      checkContents: !opts['no-contents'],
      storeDir: opts['store-dir'],
      ...(opts.jobs !== undefined ? { jobs: Math.max(1, Math.min(1024, Number(opts.jobs))) } : {}),
      ...(opts.threads !== undefined ? { threads: Number(opts.threads) } : {}),
      ...(opts['max-problems'] !== undefined ? { maxProblems: Number(opts['max-problems']) } : {}),
      // Only when shown: an event a path costs the wasm an object to make.
      ...(bar.enabled ? { onProgress: (p) => bar.update(p) } : {}),
    });
  } catch (e) {
    bar.done();
    fail(e.message);
  }
  bar.done();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const code = report.exitCode();

  let outputFailed = false;
  const write = (output, render) => {
    if (!output) return;
    try {
      output.commit(render());
    } catch (e) {
      process.stderr.write(`${NAME}: error: ${e.message}\n`);
      outputFailed = true;
    }
  };
  const whole = (format, junit) => [...report.render(opts.cache, format, junit)].join('');
  const timestamp = Math.floor(Date.now() / 1000);
  write(outputs.junit, () => whole('junit', { paths: paths(), seconds, timestamp }));
  write(outputs.summary, () => whole('github-summary'));
  // The report goes out piece by piece as it is rendered: a report of millions of problems is
  // never one string (nor objects) in JS.
  if (opts.json) await writePieces(process.stdout, report.render(opts.cache, 'json'));
  if (opts.github) await writePieces(opts.json ? process.stderr : process.stdout, report.render(opts.cache, 'github'));
  else if (!opts.json) await writePieces(process.stdout, report.render(opts.cache, 'text'));
  process.exitCode = outputFailed && code === 0 ? 1 : code;
}

/** Writes the pieces to `stream`, waiting whenever its buffer is full. */
async function writePieces(stream, pieces) {
  for (const piece of pieces) {
    if (!stream.write(piece)) await new Promise((resolve) => stream.once('drain', resolve));
  }
}

process.stdout.on('error', (e) => {
  // A closed pipe (`| head`) is not an error, as for nar-tool.
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

main().catch((e) => fail(e?.message ?? String(e)));
