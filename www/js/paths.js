// The paths table: every narinfo of the cache, searchable by name or hash part, filtered to the
// paths with problems or without a trusted signature, sortable by any column, virtualised, with
// the totals of what it shows. A cache with a lookup index is shown from it (search, sort and
// totals by the core's CacheIndex, rows made as they come into view), whatever its size. The view is built once per cache and re-attached, so its scroll
// position, sort, filter and focus survive a visit to a path.

import { h, formatBytes, formatCount } from './util.js';
import { app, pathHref, sigStatus, problemsOf } from './state.js';
import { VirtualTable } from './table.js';
import { sumSizes } from './cache.js';

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

// Widths are the stylesheet's (`col.col-<key>`): the table fits the window at any width.
const columns = [
  {
    key: 'name', label: 'Name', value: (e) => e.pname.toLowerCase(),
    cell: (e) => {
      if (!e.info && !e.light) return h('span', { class: 'pill bad', title: e.error }, e.absent ? 'absent' : 'malformed narinfo');
      return h('a', { href: pathHref(e.hash), tabindex: '-1' }, e.pname);
    },
    title: (e) => e.error ?? e.storePath,
  },
  { key: 'version', label: 'Version', value: (e) => e.version || null, cell: (e) => e.version },
  { key: 'hash', label: 'Hash part', className: 'hash', value: (e) => e.hash, cell: (e) => e.hash },
  { key: 'narSize', label: 'NAR size', num: true, value: (e) => e.narSize, cell: (e) => formatBytes(e.narSize), title: (e) => `${e.narSize ?? '—'} bytes` },
  { key: 'fileSize', label: 'File size', num: true, value: (e) => e.fileSize, cell: (e) => formatBytes(e.fileSize), title: (e) => `${e.fileSize ?? '—'} bytes` },
  { key: 'compression', label: 'Compr.', value: (e) => e.compression || null, cell: (e) => e.compression },
  { key: 'sigs', label: 'Signatures', value: sigValue, cell: sigCell },
  { key: 'refs', label: 'Refs', num: true, value: (e) => e.refCount, cell: (e) => String(e.refCount) },
];

function matches(e, q) {
  return !q || e.search.includes(q);
}

/** Whether a path has a problem: its narinfo is unreadable, or the last verification found one. */
function hasProblem(e) {
  return !e.info || problemsOf(e).length > 0;
}

/** Whether no trusted key signed it (every path, when no key is trusted). */
function lacksTrustedSignature(e) {
  const st = sigStatus(e);
  return !st || st.valid.length === 0;
}

const FILTERS = {
  all: { label: 'All paths', keep: () => true },
  problems: { label: 'With problems', keep: hasProblem },
  untrusted: { label: 'Without a trusted signature', keep: lacksTrustedSignature },
};

/** Entries by name, version and hash part: the order of ties in any sort (as the index sorts). */
function byName(entries) {
  const cmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
  return entries.sort((a, b) => cmp(a.pname.toLowerCase(), b.pname.toLowerCase()) || cmp(a.version, b.version) || cmp(a.hash, b.hash));
}

/** Index mode: sort keys the index has (the others need every narinfo: by name instead). */
const INDEX_SORTS = new Set(['name', 'version', 'hash', 'narSize', 'fileSize', 'refs']);
const ROWS_PAGE = 256;

/**
 * Index mode: the rows of the index's last query as the table wants them (`length`, `at(i)`),
 * made a page at a time as they come into view. Valid until the next query.
 */
function indexRows(cache, count) {
  const pages = new Map();
  return {
    length: count,
    at(i) {
      if (!(i >= 0 && i < count)) return undefined;
      const p = Math.floor(i / ROWS_PAGE);
      let page = pages.get(p);
      if (!page) {
        if (pages.size > 64) pages.clear();
        page = cache.index.rows(p * ROWS_PAGE, ROWS_PAGE).map((r) => cache.entryOfRow(r));
        pages.set(p, page);
      }
      return page[i - p * ROWS_PAGE];
    },
  };
}

/** Index mode: the rows and totals for the query, the filter and the table's sort. */
function indexView(cache, table, query, show) {
  if (show === 'problems') {
    const rows = [...app.problems.keys()].map((hash) => cache.entryOfBaseName(hash))
      .filter((e) => e && matches(e, query));
    return { rows: table.sort(rows), sums: sumSizes(rows) };
  }
  const key = INDEX_SORTS.has(table.sortKey) ? table.sortKey : 'name';
  const count = cache.index.query(query, key, table.sortDir < 0);
  table.showSort();
  const t = cache.index.viewTotals();
  return { rows: indexRows(cache, count), sums: t };
}

/** The paths view for the open cache (built on first use). */
export function pathsView() {
  const cache = app.cache;
  if (view && view.cache === cache) {
    view.refresh();
    return view;
  }
  view?.table.destroy();
  const count = h('span', { class: 'muted', id: 'paths-count', 'aria-live': 'polite' });
  const sums = h('span', { class: 'totals', id: 'paths-totals' });
  const note = h('span', { class: 'muted', id: 'filter-note' });
  // Signatures are in narinfos, not in the index: that filter needs them all.
  const filters = Object.entries(FILTERS).filter(([k]) => !(cache.index && k === 'untrusted'));
  const select = h('select', { id: 'paths-filter', 'aria-label': 'Show', onchange: () => v.setFilter(select.value) },
    filters.map(([k, f]) => h('option', { value: k }, f.label)));
  const table = new VirtualTable(columns, {
    label: 'Store paths',
    sortKey: 'name',
    onOpen: (e) => { location.hash = pathHref(e.hash); },
    onSort: () => v.resort(),
    rowClass: (e) => (problemsOf(e).length ? 'has-problem' : null),
    rowLabel: (e) => e.baseName,
  });
  const head = h('div', { class: 'table-head' },
    h('strong', null, cache.listed ? 'Store paths' : 'Store paths loaded'), count, sums, select, note,
    cache.index ? h('span', { class: 'muted', id: 'from-index', title: 'nar-tool-index/: search, sort and sizes without reading every narinfo' }, 'from the lookup index') : null,
    cache.listed ? null : h('span', { class: 'muted' }, '— this cache cannot be listed: closures of the roots you gave (',
      h('a', { href: '#/open' }, 'add roots'), ')'),
    h('a', { href: '#/cache', id: 'use-cache' }, 'Use this cache…'),
    h('span', { class: 'muted keys-help' },
      h('kbd', null, '/'), ' search · ', h('kbd', null, '↑'), h('kbd', null, '↓'), ' move · ', h('kbd', null, 'Enter'), ' open · ', h('kbd', null, 'Esc'), ' back'));
  const el = h('div', { class: 'paths-view', style: { display: 'contents' } }, head, table.el);
  const showTotals = (t) => sums.replaceChildren(
    h('span', { title: `${t.narSize} bytes unpacked` }, formatBytes(t.narSize), ' NAR'), ' · ',
    h('span', { title: `${t.fileSize} bytes in the cache` }, formatBytes(t.fileSize), ' files'));
  const v = {
    cache,
    el,
    table,
    sorted: [],
    query: '',
    show: 'all',
    scrollTop: 0,
    resort() {
      if (!cache.index) v.sorted = table.sort(byName([...cache.entries]));
      v.filter(true);
    },
    filter(keep) {
      if (cache.index) {
        const served = v.served?.query === v.query && !cache.index.complete && v.show === 'all' ? v.served : null;
        const { rows, sums: t } = served ? { rows: table.sort([...served.entries]), sums: sumSizes(served.entries) }
          : indexView(cache, table, v.query, v.show);
        table.setRows(rows, keep);
        const all = cache.index.totals().count;
        count.textContent = served ? `${formatCount(served.total)} of ${formatCount(cache.index.paths)}`
          : rows.length === all ? formatCount(all) : `${formatCount(rows.length)} of ${formatCount(all)}`;
        showTotals(t);
        note.textContent = cache.index.complete ? ''
          : served ? `found by the server${served.total > rows.length ? `, the first ${formatCount(rows.length)} shown` : ''} (reading the index: ${formatCount(all)} paths so far)`
            : `reading the index: ${formatCount(all)} of ${formatCount(cache.index.paths)} paths so far`;
        if (v.query && !cache.index.complete && !served) v.askServer(v.query);
        return;
      }
      const q = v.query;
      const f = FILTERS[v.show];
      const rows = q || v.show !== 'all' ? v.sorted.filter((e) => matches(e, q) && f.keep(e)) : v.sorted;
      table.setRows(rows, keep);
      count.textContent = rows.length === cache.entries.length
        ? `${formatCount(cache.entries.length)}`
        : `${formatCount(rows.length)} of ${formatCount(cache.entries.length)}`;
      showTotals(sumSizes(rows));
      note.textContent = v.show === 'untrusted' && !app.keys.length ? 'no trusted keys set: add them under Keys'
        : v.show === 'problems' && !app.problemsKnown ? 'unreadable narinfos only: verify to find the rest' : '';
    },
    /** Index mode, while the index is being read: the server's answer to a search, shown when it comes. */
    served: null,
    asked: null,
    askServer(query) {
      if (v.asked === query) return;
      v.asked = query;
      cache.searchServer(query).then((answer) => {
        if (!answer || v.query !== query || cache.index.complete) return;
        v.served = { query, ...answer };
        v.filter(false);
      });
    },
    setFilter(show) {
      if (!FILTERS[show] || show === v.show) return;
      v.show = show;
      select.value = show;
      table.el.scrollTop = 0;
      v.filter(false);
    },
    setQuery(q) {
      q = q.trim().toLowerCase();
      if (q === v.query) return;
      v.query = q;
      table.el.scrollTop = 0;
      v.filter(false);
    },
    refresh() {
      // Entries, keys or verification problems may have changed since it was last shown.
      if (cache.index) v.filter(true);
      else if (v.sorted.length !== cache.entries.length) v.resort();
      else v.filter(true);
    },
  };
  view = v;
  v.resort();
  return v;
}

export function currentPathsView() {
  return view && view.cache === app.cache ? view : null;
}
