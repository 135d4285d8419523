// The page's shared state and the helpers every view uses.

import { h } from './util.js';

const KEYS_STORAGE = 'nar-tool-inspector.trustedKeys';

export const app = {
  /** The npm package's browser entry (pkg/browser.js): the wasm core's functions and classes. */
  wasm: null,
  cache: null,
  keys: loadKeys(),
  keysVersion: 0,
  /** Problems from the last verification, by hash part. */
  problems: new Map(),
  /** Whether a verification has run (else only unreadable narinfos are known problems). */
  problemsKnown: false,
  /** Re-renders the current view (set by app.js). */
  rerender: () => {},
};

function loadKeys() {
  try {
    const v = JSON.parse(localStorage.getItem(KEYS_STORAGE) ?? '[]');
    return Array.isArray(v) ? v.filter((k) => typeof k === 'string') : [];
  } catch {
    return [];
  }
}

export function saveKeys(keys) {
  app.keys = keys;
  app.keysVersion++;
  localStorage.setItem(KEYS_STORAGE, JSON.stringify(keys));
}

export function pathHref(hash) {
  return `#/path/${hash}`;
}

export function filesHref(hash, parts = []) {
  return `#/path/${hash}/files${parts.map((p) => '/' + encodeURIComponent(p)).join('')}`;
}

/** A link to a store path (full or base name): to its page when in the cache, else plain text. */
export function pathLink(pathOrBase, text) {
  const base = pathOrBase.slice(pathOrBase.lastIndexOf('/') + 1);
  const e = app.cache?.entryOfBaseName(base);
  const label = text ?? base;
  if (e && (e.info || e.light)) return h('a', { href: pathHref(e.hash) }, label);
  return h('span', { title: 'not in this cache' }, label, ' ', h('span', { class: 'pill bad' }, 'missing'));
}

/**
 * Signature status of a narinfo against the trusted keys (wasm verifySignatures), cached on the
 * entry until the keys change. null when no keys are set.
 */
export function sigStatus(entry) {
  if (!app.keys.length || !entry.info) return null;
  if (entry.sigStatus && entry.sigStatus.version === app.keysVersion) return entry.sigStatus;
  let s;
  try {
    s = { ...app.wasm.verifySignatures(entry.info, app.keys), version: app.keysVersion };
  } catch (e) {
    s = { error: e.message ?? String(e), valid: [], invalid: [], unknown: [], malformed: [], version: app.keysVersion };
  }
  entry.sigStatus = s;
  return s;
}

/** The status of one `Sig:` line given a sigStatus. */
export function sigLineStatus(status, line) {
  if (!status) return null;
  if (status.error) return 'error';
  if (status.malformed.includes(line)) return 'malformed';
  const name = line.slice(0, line.indexOf(':'));
  if (status.valid.includes(name)) return 'valid';
  if (status.invalid.includes(name)) return 'invalid';
  return 'untrusted key';
}

export function statusPill(status) {
  const cls = { valid: 'ok', invalid: 'bad', malformed: 'bad', error: 'bad' }[status] ?? 'warn';
  return h('span', { class: `pill ${cls}` }, status);
}

export function problemsOf(entry) {
  return app.problems.get(entry.hash) ?? [];
}

/** The hash part a problem is about (its path is a store path, a narinfo or a NAR file). */
export function problemHash(path) {
  const base = path.slice(path.lastIndexOf('/') + 1);
  const m = /^([0123456789abcdfghijklmnpqrsvwxyz]{32})(-|\.narinfo$)/.exec(base);
  return m ? m[1] : null;
}
