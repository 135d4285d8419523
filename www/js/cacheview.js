// This cache: its nix-cache-info, what it holds, and how to use it — the nix.conf lines that make
// Nix substitute from it, with the trusted keys that sign its paths.

import { h, formatBytes, formatCount } from './util.js';
import { app, sigStatus } from './state.js';

/** The substituter URL Nix needs: the cache's own for HTTP, a file:// guess for a local folder. */
function substituter(cache) {
  if (cache.source.kind === 'http') return { url: cache.source.base.replace(/\/$/, ''), guessed: false };
  return { url: `file:///path/to/${cache.label.replace(/\/$/, '')}`, guessed: true };
}

/** The trusted keys that sign paths of this cache, and the names of keys that sign the others. */
function signers(cache) {
  const used = new Set();
  const others = new Set();
  for (const e of cache.entries) {
    if (!e.info) continue;
    const st = sigStatus(e);
    for (const n of st?.valid ?? []) used.add(n);
    if (!st || !st.valid.length) for (const s of e.info.sigs) others.add(s.slice(0, s.indexOf(':')));
  }
  const keys = app.keys.filter((k) => used.has(k.slice(0, k.indexOf(':'))));
  return { keys, others: [...others].filter((n) => !used.has(n)).sort() };
}

/** The nix.conf lines, as text. */
export function nixConf(cache) {
  const { url } = substituter(cache);
  const { keys, others } = signers(cache);
  const lines = [`extra-substituters = ${url}`];
  if (keys.length) lines.push(`extra-trusted-public-keys = ${keys.join(' ')}`);
  else lines.push(`# extra-trusted-public-keys = ${others.length ? others.map((n) => `${n}:…`).join(' ') : '<the public key that signs this cache>'}`);
  return lines.join('\n') + '\n';
}

export function cacheView() {
  const cache = app.cache;
  const info = cache.cacheInfo;
  const sub = substituter(cache);
  const { keys, others } = signers(cache);
  const { count, narSize: nar, fileSize: file } = cache.totals();
  const conf = nixConf(cache);
  const copy = h('button', { type: 'button', id: 'copy-nix-conf', onclick: async () => {
    try {
      await navigator.clipboard.writeText(conf);
      copy.textContent = 'Copied';
    } catch {
      copy.textContent = 'Select and copy';
    }
  } }, 'Copy');
  const row = (k, ...v) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, ...v));
  return h('div', { class: 'cache-view' },
    h('h1', null, 'This cache'),
    h('table', { class: 'kv', id: 'cache-fields' }, h('tbody', null,
      row('Location', cache.label),
      row('StoreDir', info?.storeDir ?? cache.storeDir),
      row('WantMassQuery', info ? String(info.wantMassQuery) : '—'),
      row('Priority', info?.priority != null ? String(info.priority) : '—'),
      row(cache.listed ? 'Paths' : 'Paths loaded', formatCount(count)),
      cache.index ? row('Lookup index', `${formatCount(cache.index.paths)} paths, ${formatCount(cache.index.shardCount)} shards`,
        cache.index.complete ? '' : ` (${formatCount(cache.index.loadedShards)} read so far)`) : null,
      row('NAR size', `${formatBytes(nar)} (${nar} bytes)`),
      row('File size', `${formatBytes(file)} (${file} bytes)`))),
    cache.cacheInfoError ? h('div', { class: 'notice bad' }, `nix-cache-info: ${cache.cacheInfoError}`) : null,
    h('h2', null, 'Use this cache'),
    h('p', null, 'Add these lines to ', h('code', null, '/etc/nix/nix.conf'), ' (or ', h('code', null, '~/.config/nix/nix.conf'),
      '; a user who is not in ', h('code', null, 'trusted-users'), ' needs the URL in ', h('code', null, 'trusted-substituters'), ' too):'),
    h('pre', { class: 'content', id: 'nix-conf' }, conf),
    h('div', { class: 'actions' }, copy),
    sub.guessed ? h('p', { class: 'notice', id: 'nix-conf-path' }, 'A folder opened in the browser does not tell its place on disk: put its absolute path in the URL.') : null,
    keys.length ? null : h('p', { class: 'notice', id: 'nix-conf-keys' },
      app.keys.length ? 'None of your trusted keys signs a path of this cache. ' : 'No trusted keys are set, so the key line is a comment. ',
      others.length ? ['Its paths are signed by ', others.map((n, i) => [i ? ', ' : '', h('code', null, n)]), ': ', h('a', { href: '#/keys' }, 'add the public key'), ' you trust for it.']
        : 'Its paths are not signed: Nix substitutes only signed paths unless told not to.'));
}
