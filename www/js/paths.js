// The paths table: every narinfo of the cache, searchable by name or hash part, sortable by any
// column, virtualised. The view is built once per cache and re-attached, so its scroll position,
// sort and focus survive a visit to a path.

import { h, formatBytes, formatCount } from './util.js';
import { app, pathHref, sigStatus, problemsOf } from './state.js';
import { VirtualTable } from './table.js';

let view = null;

function sigCell(e) {
  if (!e.info) return '';
  const names = e.info.sigs.map((s) => s.slice(0, s.indexOf(':')));
  const st = sigStatus(e);
  if (!st) return e.sigCount ? `${e.sigCount} · ${names.join(', ')}` : h('span', { class: 'muted' }, 'unsigned');
  if (st.valid.length) return h('span', { class: 'pill ok' }, `✓ ${st.valid.join(', ')}`);
  if (st.invalid.length || st.malformed.length || st.error) return h('span', { class: 'pill bad' }, '✗ invalid');
  return h('span', { class: 'pill warn' }, e.sigCount ? 'untrusted' : 'unsigned');
}

function sigValue(e) {
  const st = sigStatus(e);
  if (!st) return e.sigCount;
  return st.valid.length ? 2 : st.invalid.length || st.malformed.length ? 0 : 1;
}

const columns = [
  {
    key: 'name', label: 'Name', width: '30%', value: (e) => e.pname.toLowerCase(),
    cell: (e) => {
      if (!e.info) return h('span', { class: 'pill bad', title: e.error }, e.absent ? 'absent' : 'malformed narinfo');
      return h('a', { href: pathHref(e.hash), tabindex: '-1' }, e.pname);
    },
    title: (e) => e.error ?? e.storePath,
  },
  { key: 'version', label: 'Version', width: '12%', value: (e) => e.version || null, cell: (e) => e.version },
  { key: 'hash', label: 'Hash part', width: '22%', className: 'hash', value: (e) => e.hash, cell: (e) => e.hash },
  { key: 'narSize', label: 'NAR size', num: true, width: '9%', value: (e) => e.narSize, cell: (e) => formatBytes(e.narSize), title: (e) => `${e.narSize ?? '—'} bytes` },
  { key: 'fileSize', label: 'File size', num: true, width: '9%', value: (e) => e.fileSize, cell: (e) => formatBytes(e.fileSize), title: (e) => `${e.fileSize ?? '—'} bytes` },
  { key: 'compression', label: 'Compr.', width: '7%', value: (e) => e.compression || null, cell: (e) => e.compression },
  { key: 'sigs', label: 'Signatures', width: '14%', value: sigValue, cell: sigCell },
  { key: 'refs', label: 'Refs', num: true, width: '6%', value: (e) => e.refCount, cell: (e) => String(e.refCount) },
];

function matches(e, q) {
  return !q || e.search.includes(q);
}

/** The paths view for the open cache (built on first use). */
export function pathsView() {
  const cache = app.cache;
  if (view && view.cache === cache) {
    view.refresh();
    return view;
  }
  view?.table.destroy();
  const count = h('span', { class: 'muted', 'aria-live': 'polite' });
  const table = new VirtualTable(columns, {
    label: 'Store paths',
    sortKey: 'name',
    onOpen: (e) => { location.hash = pathHref(e.hash); },
    onSort: () => v.resort(),
    rowClass: (e) => (problemsOf(e).length ? 'has-problem' : null),
    rowLabel: (e) => e.baseName,
  });
  const head = h('div', { class: 'table-head' },
    h('strong', null, cache.listed ? 'Store paths' : 'Store paths loaded'), count,
    cache.listed ? null : h('span', { class: 'muted' }, '— this cache cannot be listed: closures of the roots you gave (',
      h('a', { href: '#/open' }, 'add roots'), ')'),
    h('span', { class: 'muted', style: { marginLeft: 'auto' } },
      h('kbd', null, '/'), ' search · ', h('kbd', null, '↑'), h('kbd', null, '↓'), ' move · ', h('kbd', null, 'Enter'), ' open · ', h('kbd', null, 'Esc'), ' back'));
  const el = h('div', { class: 'paths-view', style: { display: 'contents' } }, head, table.el);
  const v = {
    cache,
    el,
    table,
    sorted: [],
    query: '',
    scrollTop: 0,
    resort() {
      v.sorted = table.sort([...cache.entries]);
      v.filter(true);
    },
    filter(keep) {
      const q = v.query;
      const rows = q ? v.sorted.filter((e) => matches(e, q)) : v.sorted;
      table.setRows(rows, keep);
      count.textContent = q
        ? `${formatCount(rows.length)} of ${formatCount(cache.entries.length)}`
        : `${formatCount(cache.entries.length)}`;
    },
    setQuery(q) {
      q = q.trim().toLowerCase();
      if (q === v.query) return;
      v.query = q;
      table.el.scrollTop = 0;
      v.filter(false);
    },
    refresh() {
      if (v.sorted.length !== cache.entries.length) v.resort();
      else table.schedule(true);
    },
  };
  view = v;
  v.resort();
  return v;
}

export function currentPathsView() {
  return view && view.cache === app.cache ? view : null;
}
