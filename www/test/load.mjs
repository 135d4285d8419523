#!/usr/bin/env node
// A load test for `nar-tool serve`: C concurrent clients (one keep-alive connection each) fetch
// the cache's NAR files in a loop for S seconds; every body's SHA-256 and length is compared with
// the file on disk. Prints one JSON line; exits 1 on any error, short body or mismatch.
//
//   node test/load.mjs --url http://127.0.0.1:8080 --cache DIR [--clients 64] [--seconds 5]
//   node test/load.mjs --cache DIR ...   (without --url: starts nar-tool serve itself; NAR_TOOL_BIN)

import http from 'node:http';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServe } from './serve.mjs';

export async function load({ url, cache, clients = 64, seconds = 5, files = null }) {
  const nars = files ?? readdirSync(join(cache, 'nar')).filter((n) => !n.startsWith('.')).map((n) => `nar/${n}`);
  if (!nars.length) throw new Error(`no NAR files in ${cache}/nar`);
  const expected = nars.map((p) => {
    const bytes = readFileSync(join(cache, p));
    return { path: p, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  });
  const base = new URL(url);
  const stats = { requests: 0, bytes: 0, errors: 0, mismatches: 0, non200: 0, firstError: null, latencies: [] };
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();

  const one = (agent, f) => new Promise((resolve) => {
    const start = performance.now();
    const req = http.get({ host: base.hostname, port: base.port, path: '/' + f.path, agent }, (res) => {
      const hash = createHash('sha256');
      let n = 0;
      res.on('data', (c) => { hash.update(c); n += c.length; });
      res.on('end', () => {
        stats.requests++;
        stats.bytes += n;
        stats.latencies.push(performance.now() - start);
        if (res.statusCode !== 200) {
          stats.non200++;
          stats.firstError ??= `${f.path}: HTTP ${res.statusCode}`;
        } else if (n !== f.size || hash.digest('hex') !== f.sha256) {
          stats.mismatches++;
          stats.firstError ??= `${f.path}: ${n} bytes, expected ${f.size}, or a different SHA-256`;
        }
        resolve();
      });
      res.on('error', (e) => { stats.errors++; stats.firstError ??= `${f.path}: ${e.message}`; resolve(); });
    });
    req.on('error', (e) => { stats.errors++; stats.firstError ??= `${f.path}: ${e.message}`; resolve(); });
  });

  const client = async (c) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let i = c;
    while (performance.now() < deadline) {
      await one(agent, expected[i++ % expected.length]);
    }
    agent.destroy();
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  const elapsed = (performance.now() - t0) / 1000;
  const lat = stats.latencies.sort((a, b) => a - b);
  const q = (p) => (lat.length ? +lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2) : null);
  return {
    clients,
    seconds: +elapsed.toFixed(2),
    files: expected.length,
    requests: stats.requests,
    bytes: stats.bytes,
    requestsPerSecond: Math.round(stats.requests / elapsed),
    mebibytesPerSecond: +(stats.bytes / elapsed / 1048576).toFixed(1),
    latencyMs: { p50: q(0.5), p99: q(0.99), max: q(1) },
    errors: stats.errors,
    non200: stats.non200,
    mismatches: stats.mismatches,
    firstError: stats.firstError,
  };
}

async function cli() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      cache: { type: 'string' },
      clients: { type: 'string', default: '64' },
      seconds: { type: 'string', default: '5' },
      threads: { type: 'string', default: '8' },
    },
  });
  if (!values.cache) {
    console.error('usage: load.mjs --cache DIR [--url URL] [--clients N] [--seconds S] [--threads T]');
    process.exit(2);
  }
  let server = null;
  let url = values.url;
  if (!url) {
    // Every client comes from this one address: its share of connections must hold them all.
    const share = String(Math.max(128, 2 * Number(values.clients)));
    server = await startServe(values.cache, { threads: Number(values.threads), args: ['--max-connections-per-client', share] });
    url = server.root;
  }
  try {
    const r = await load({ url, cache: values.cache, clients: Number(values.clients), seconds: Number(values.seconds) });
    console.log(JSON.stringify(r));
    if (r.errors || r.non200 || r.mismatches || !r.requests) process.exitCode = 1;
  } finally {
    await server?.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await cli();
