// Verification in a Web Worker (the wasm verifyCache), with progress, cancel, and the problems
// listed with the CLI's kinds and messages. One job at a time; it outlives view changes.

import { h, formatBytes, formatCount } from './util.js';
import { app, pathHref, problemHash } from './state.js';
import { describe } from './source.js';

export const job = {
  running: false,
  worker: null,
  label: '',
  progress: null,
  report: null,
  exitCode: null,
  error: null,
  cancelled: false,
  startedAt: 0,
  elapsed: 0,
  checkContents: true,
};

const listeners = new Set();
function emit(type = 'state') {
  for (const f of listeners) f(type);
  updateBadge();
}

/** Starts verifying `only` (narinfo names; default: every narinfo known). */
export function startVerify({ only = null, label = null, checkContents = job.checkContents } = {}) {
  const cache = app.cache;
  if (!cache) return;
  cancelVerify(false);
  const narinfos = cache.knownNarinfos();
  // The bytes to read, as the narinfos say (the meter follows them: a large NAR moves it too).
  const wanted = new Set(only ?? narinfos);
  const sizeOf = (name) => cache.entryOfBaseName(name)?.fileSize ?? 0;
  const totalBytes = !checkContents ? 0
    : only ? only.reduce((n, name) => n + sizeOf(name), 0)
      : cache.index ? cache.totals().fileSize : cache.entries.reduce((n, e) => n + (wanted.has(e.file) ? e.fileSize ?? 0 : 0), 0);
  Object.assign(job, {
    running: true,
    label: label ?? (cache.listed ? `the whole cache (${formatCount(narinfos.length)} narinfos)` : `the ${formatCount(narinfos.length)} narinfos loaded`),
    progress: { done: 0, total: (only ?? narinfos).length, path: '', bytes: 0 },
    totalBytes,
    report: null,
    exitCode: null,
    error: null,
    cancelled: false,
    startedAt: performance.now(),
    elapsed: 0,
    checkContents,
  });
  // With the page's query: nar-tool serve gives the worker the page's policy (its connections).
  const spawn = () => new Worker(new URL(`./verify-worker.js${location.search}`, import.meta.url), { type: 'module' });
  const worker = spawn();
  job.worker = worker;
  // A large cache is shared: helpers check their blocks of paths and send the checks to `worker`.
  const count = verifyWorkers((only ?? narinfos).length);
  const channels = Array.from({ length: count - 1 }, () => new MessageChannel());
  job.helpers = channels.map((channel, k) => {
    const helper = spawn();
    // A helper that fails or cannot start leaves its paths to the leader: the leader stops
    // waiting for it (one that ends well has told it so itself, on its port).
    const failed = () => {
      helper.terminate();
      if (job.worker === worker) worker.postMessage({ type: 'helper-failed', index: k });
    };
    helper.onmessage = (ev) => {
      if (ev.data?.type === 'helped') helper.terminate();
      else if (ev.data?.type === 'error') failed();
    };
    helper.onerror = failed;
    return helper;
  });
  worker.onmessage = (ev) => {
    const m = ev.data;
    if (job.worker !== worker) return;
    if (m.type === 'progress') {
      job.progress = m;
      emit('progress');
      return;
    } else {
      job.running = false;
      job.elapsed = performance.now() - job.startedAt;
      worker.terminate();
      stopHelpers();
      job.worker = null;
      if (m.type === 'report') {
        job.report = m.report;
        job.exitCode = m.exitCode;
        job.sharedBatches = m.sharedBatches ?? 0;
        indexProblems(m.report);
      } else {
        job.error = m.message;
      }
    }
    emit();
  };
  worker.onerror = (ev) => {
    if (job.worker !== worker) return;
    stopHelpers();
    job.running = false;
    job.error = ev.message || 'the verify worker failed to start';
    job.worker = null;
    emit();
  };
  const task = {
    source: describe(cache.source),
    narinfos,
    narFiles: only ? null : cache.narFiles,
    options: { trustedKeys: app.keys, checkContents, only, storeDir: cache.storeDir },
  };
  const ports = channels.map((c) => c.port1);
  worker.postMessage({ ...task, share: count > 1 ? { index: 0, count, ports } : undefined }, ports);
  job.helpers.forEach((helper, k) => {
    const port = channels[k].port2;
    helper.postMessage({ ...task, share: { index: k + 1, count, port } }, [port]);
  });
  emit();
}

/** Paths from which a verification is shared between workers (a worker's start costs ~0.1 s). */
const SHARED_FROM = 256;

/**
 * How many workers verify `paths` paths: one below SHARED_FROM, else the CPUs, at most 4.
 * `?verify-workers=N` in the page's address sets it, from one path on (for tests).
 */
function verifyWorkers(paths) {
  const asked = Number(new URLSearchParams(location.search).get('verify-workers'));
  if (Number.isInteger(asked) && asked >= 1 && asked <= 16) return Math.min(asked, Math.max(1, paths));
  if (paths < SHARED_FROM) return 1;
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}

function stopHelpers() {
  for (const helper of job.helpers ?? []) helper.terminate();
  job.helpers = [];
}

export function cancelVerify(notify = true) {
  if (!job.worker) return;
  job.worker.terminate();
  stopHelpers();
  job.worker = null;
  job.running = false;
  job.cancelled = true;
  job.elapsed = performance.now() - job.startedAt;
  if (notify) emit();
}

function indexProblems(report) {
  app.problems = new Map();
  app.problemsKnown = true;
  for (const p of report.problems) {
    const hash = problemHash(p.path);
    if (!hash) continue;
    if (!app.problems.has(hash)) app.problems.set(hash, []);
    app.problems.get(hash).push(p);
  }
}

export function resetVerify() {
  cancelVerify(false);
  Object.assign(job, { label: '', progress: null, report: null, error: null, cancelled: false, exitCode: null });
  app.problems = new Map();
  app.problemsKnown = false;
  updateBadge();
}

/** How far the job is, 0..100: by bytes when the NARs are read (and their sizes known), else by paths. */
function percent() {
  const p = job.progress;
  if (job.report) return 100;
  if (!p || !p.total) return 0;
  const byPaths = (100 * p.done) / p.total;
  return job.totalBytes > 0 ? Math.max(byPaths, Math.min(100, (100 * p.bytes) / job.totalBytes)) : byPaths;
}

function updateBadge() {
  const b = document.getElementById('verify-badge');
  if (!b) return;
  b.hidden = false;
  if (job.running) {
    const p = job.progress;
    b.className = 'badge';
    b.textContent = p && p.total ? `${Math.floor(percent())}%` : '…';
  } else if (job.report) {
    const failures = job.report.problems.filter((p) => p.kind !== 'orphan-nar').length;
    b.className = failures ? 'badge bad' : 'badge ok';
    b.textContent = failures ? String(failures) : '✓';
  } else {
    b.hidden = true;
  }
}

/** The report as `nar-tool verify` prints it: its summary line, or (`text`) all of it. */
function rendered(report, format) {
  return app.wasm.renderReport(report, app.cache.label, format).trimEnd();
}

export function verifyView() {
  const el = h('div', { class: 'verify-view' });
  const render = (type) => {
    if (!el.isConnected && el.childNodes.length) {
      listeners.delete(render);
      return;
    }
    const old = el.querySelector('#verify-status');
    if (type === 'progress' && old) old.replaceWith(statusLine());
    else el.replaceChildren(...content());
  };
  listeners.add(render);
  render();
  return el;
}

function statusLine() {
  const p = job.progress;
  const pct = percent();
  return h('div', { class: 'verify-status', id: 'verify-status' },
    h('div', { class: 'meter', role: 'progressbar', 'aria-valuenow': String(Math.round(pct)), 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': 'Verification progress' },
      h('div', { style: { width: `${pct}%` } })),
    h('span', null, `${job.running ? 'Checking' : 'Checked'} ${job.label}: `,
      p ? `${formatCount(p.done)} / ${formatCount(p.total)} paths, ${formatBytes(p.bytes)}${job.running && job.totalBytes ? ` of ${formatBytes(job.totalBytes)}` : ''} read` : '',
      job.running && p?.path ? h('span', { class: 'muted' }, ` · ${p.path}`) : null,
      !job.running ? ` · ${(job.elapsed / 1000).toFixed(1)} s` : null));
}

function content() {
  const cache = app.cache;
  const out = [h('h1', null, 'Verify')];
  const contents = h('input', { type: 'checkbox', id: 'check-contents', checked: job.checkContents, onchange: (e) => { job.checkContents = e.target.checked; } });
  out.push(h('p', null, 'Every hash, size, signature, reference, URL and file, as ', h('code', null, 'nar-tool verify'),
    ' checks them, in a worker (this page stays usable). ',
    app.keys.length ? `Signatures are checked against ${app.keys.length} trusted key${app.keys.length > 1 ? 's' : ''}. `
      : ['No trusted keys: signatures are not checked (', h('a', { href: '#/keys' }, 'add keys'), '). ']));
  out.push(h('div', { class: 'actions' },
    // Through the index, the whole cache is known once the index is read whole.
    h('button', { type: 'button', class: 'primary', id: 'verify-all', disabled: job.running || (cache.index && !cache.index.complete), onclick: () => startVerify() },
      cache.listed ? 'Verify the whole cache' : 'Verify the paths loaded'),
    h('button', { type: 'button', id: 'verify-cancel', disabled: !job.running, onclick: () => cancelVerify() }, 'Cancel'),
    h('label', null, contents, ' read and hash every NAR (off: narinfos, signatures and file sizes only)')));
  if (job.label) out.push(statusLine());
  if (job.cancelled) out.push(h('div', { class: 'notice', id: 'verify-cancelled' }, 'Cancelled.'));
  if (job.error) out.push(h('div', { class: 'notice bad', id: 'verify-error' }, `Verification could not run: ${job.error}`));
  if (job.report) {
    const r = job.report;
    out.push(h('p', { class: `summary ${r.ok ? 'ok' : 'bad'}`, id: 'verify-summary' }, rendered(r, 'summary'), ` (exit status ${job.exitCode})`));
    if (r.problems.length) {
      out.push(h('table', { class: 'problems', id: 'problems' },
        h('thead', null, h('tr', null, h('th', null, 'Kind'), h('th', null, 'Path'), h('th', null, 'Message'), h('th', null, 'Expected / found'))),
        h('tbody', null, r.problems.map((p) => {
          const hash = problemHash(p.path);
          const e = hash ? cache.byHash.get(hash) : null;
          // What the check compared, when it compared two values (`found` is unknown for a NAR
          // longer than NarSize); kept on the row too, as the report has it.
          const compared = Object.fromEntries(['expected', 'found'].filter((k) => p[k] !== undefined).map((k) => [k, p[k]]));
          return h('tr', { class: 'problem', dataset: compared },
            h('td', null, h('span', { class: `pill ${p.kind === 'orphan-nar' ? 'warn' : 'bad'} kind` }, p.kind)),
            h('td', { class: 'path' }, e ? h('a', { href: pathHref(e.hash) }, p.path) : p.path),
            h('td', { class: 'msg' }, p.message),
            h('td', { class: 'compared' }, Object.entries(compared).map(([k, v]) => h('div', null, `${k} `, h('code', null, v)))));
        }))));
      out.push(h('details', null, h('summary', null, 'As the CLI prints them'),
        h('pre', { class: 'content', id: 'problems-text' }, rendered(r, 'text'))));
    }
  }
  return out;
}
