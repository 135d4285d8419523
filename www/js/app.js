// The inspector: boot (wasm, the cache to open), routing, the open and keys views, the global
// keyboard (/ search, Esc back) and drag-and-drop of a cache folder.
//
// Routes: #/ paths · #/path/<hash> · #/path/<hash>/files/<a>/<b> · #/verify · #/keys · #/open ·
// #/cache (this cache: nix-cache-info, totals, the nix.conf lines to use it)
// The cache: ?cache=<URL> (default: the nar-tool serve this page comes from), &roots=<a,b> for a
// cache that cannot be listed; or a local folder (picked or dropped, kept in memory only).

import { h, errorMessage, formatCount } from './util.js';
import { app } from './state.js';
import { keysView } from './keys.js';
import { cacheView } from './cacheview.js';
import { Cache } from './cache.js';
import { httpSource, filesSource, cacheFiles } from './source.js';
import { pathsView, currentPathsView } from './paths.js';
import { pathView } from './pathview.js';
import { filesView, forgetNars } from './files.js';
import { verifyView, resetVerify, job } from './verify.js';
import { loginView, savedAuthorization, forgetAuthorization } from './login.js';

const main = document.getElementById('main');
const search = document.getElementById('search');
const label = document.getElementById('cache-label');
const progressEl = document.getElementById('progress');

let openError = null;
/** The base URL of an HTTP cache that answered 401: the open view asks for credentials. */
let loginFor = null;
let loading = false;
let lastRoute = null;
/** Set by Esc back to the table: the active row gets the focus once the table is shown. */
let focusTable = false;

// ---------------------------------------------------------------- progress

function setProgress(text, done, total) {
  progressEl.hidden = false;
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  progressEl.querySelector('.progress-bar > div').style.width = `${pct}%`;
  progressEl.setAttribute('aria-valuenow', String(Math.round(pct)));
  progressEl.querySelector('.progress-text').textContent = text;
}

function clearProgress() {
  progressEl.hidden = true;
}

// ---------------------------------------------------------------- wasm

/** The npm package's browser entry, served by nar-tool serve at /_nar-tool/pkg/, its wasm initialised. */
async function loadWasm() {
  const m = await import('../pkg/browser.js');
  await m.init();
  return m;
}

// ---------------------------------------------------------------- opening a cache

/**
 * The cache this page comes with: nar-tool serve's root when the page is its /_nar-tool/, else
 * the page's own folder (the inspector's files copied beside a cache).
 */
function defaultCacheUrl() {
  const here = new URL('./', location.href);
  return here.pathname.endsWith('/_nar-tool/') ? new URL('../', here).href : here.href;
}

async function openCache(source, roots = []) {
  resetVerify();
  forgetNars();
  openError = null;
  loginFor = null;
  loading = true;
  const cache = new Cache(app.wasm, source);
  app.cache = cache;
  label.textContent = source.label;
  label.title = source.label;
  render();
  try {
    setProgress(`Opening ${source.label}…`, 0, 0);
    await cache.open();
    if (cache.index) {
      setProgress('Reading the lookup index…', 0, 0);
      await cache.openIndex();
      readIndexInBackground(cache);
    } else if (cache.listed) {
      const total = cache.narinfoNames.length;
      let last = 0;
      await cache.loadNarinfos(cache.narinfoNames, (done) => {
        const now = performance.now();
        if (now - last > 80 || done === total) {
          last = now;
          setProgress(`Loading narinfos: ${formatCount(done)} / ${formatCount(total)}`, done, total);
        }
      });
    }
    if (roots.length) await addRoots(roots);
  } catch (e) {
    openError = `Cannot open ${source.label}: ${errorMessage(e)}`;
    if (source.kind === 'http' && /\bHTTP 401\b/.test(errorMessage(e))) {
      loginFor = source.base;
      if (source.authorization) forgetAuthorization(source.base);
      openError = source.authorization ? 'These credentials were refused.' : null;
    }
    app.cache = null;
    label.textContent = '';
  } finally {
    loading = false;
    if (!app.cache?.index) clearProgress();
  }
  render();
}

/**
 * The rest of a cache's lookup index, after its first page is shown: the table grows as shards
 * arrive (shown again at most every half second), with the progress in bytes of the index.
 */
async function readIndexInBackground(cache) {
  const index = cache.index;
  // The table is searched and sorted again as it grows: at most a tenth of the time, so that
  // reading the index goes on at full pace.
  let next = 0;
  const show = (loaded, count) => {
    if (app.cache !== cache) return;
    setProgress(`Reading the lookup index: ${formatCount(loaded)} / ${formatCount(count)} shards`, loaded, count);
    const now = performance.now();
    if (now < next || loaded === count) return;
    const v = currentPathsView();
    if (v && main.contains(v.el)) v.refresh();
    const took = performance.now() - now;
    next = performance.now() + Math.max(1000, 10 * took);
  };
  try {
    await cache.loadIndex(show);
  } catch (e) {
    if (app.cache === cache) cache.indexError = `The lookup index could not be read whole: ${errorMessage(e)}`;
  }
  if (app.cache !== cache) return;
  clearProgress();
  if (cache.indexError) {
    main.prepend(h('div', { class: 'notice bad', id: 'index-error' }, cache.indexError));
  }
  currentPathsView()?.refresh();
  document.body.dataset.indexComplete = String(index.complete);
}

async function addRoots(roots) {
  const cache = app.cache;
  await cache.addRoots(roots, (done, known) => setProgress(`Following references: ${formatCount(done)} / ${formatCount(known)} narinfos`, done, known));
  clearProgress();
}

/** Opens the HTTP cache at `url` with the credentials saved for it this session, if any. */
function openHttp(url, roots = []) {
  const base = new URL(url.endsWith('/') ? url : `${url}/`, location.href).href;
  return openCache(httpSource(app.wasm, url, { authorization: savedAuthorization(base) }), roots);
}

function openUrl(url, roots = []) {
  const u = new URL(location.href);
  u.search = '';
  u.searchParams.set('cache', url);
  if (roots.length) u.searchParams.set('roots', roots.join(','));
  u.hash = '#/';
  if (u.href === location.href) location.reload();
  else location.href = u.href;
}

async function openFiles(pairs) {
  let found;
  try {
    found = cacheFiles(pairs);
  } catch (e) {
    openError = errorMessage(e);
    render();
    return;
  }
  // Forget any ?cache= so a reload does not reopen something else silently.
  if (location.search) history.replaceState(null, '', location.pathname + '#/');
  else if (location.hash !== '#/') location.hash = '#/';
  await openCache(filesSource(found.files, found.label));
}

/** Files of a dropped folder, as [relative path, File] pairs. */
async function droppedFiles(items) {
  const pairs = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      pairs.push([prefix + entry.name, f]);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        await Promise.all(batch.map((b) => walk(b, `${prefix}${entry.name}/`)));
      }
    }
  };
  const entries = [...items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  await Promise.all(entries.map((e) => walk(e, '')));
  return pairs;
}

/** What was dropped: a folder (walked), else loose files taken as the cache's top level. */
async function dropped(dataTransfer) {
  const pairs = await droppedFiles(dataTransfer.items);
  if (pairs.length) return pairs;
  return [...dataTransfer.files].map((f) => [f.name, f]);
}

// ---------------------------------------------------------------- views

function openView(params) {
  const defaultUrl = app.cache?.source.kind === 'http' ? app.cache.source.base : defaultCacheUrl();
  const urlInput = h('input', { type: 'url', id: 'cache-url', value: defaultUrl, 'aria-label': 'Binary cache URL', required: true });
  const folder = h('input', { type: 'file', id: 'folder-input', webkitdirectory: true, multiple: true, hidden: true });
  folder.addEventListener('change', () => {
    const pairs = [...folder.files].map((f) => [f.webkitRelativePath || f.name, f]);
    if (pairs.length) openFiles(pairs);
  });
  const rootsInput = h('textarea', { id: 'roots', rows: '4', placeholder: '/nix/store/…-hello-2.12\nor a hash part: 12221svl9zlcqbffq6hxanhsxsk7wlyr', 'aria-label': 'Roots' },
    params.get('root') ?? '');
  const canRoots = app.cache && !app.cache.listed;
  return h('div', null,
    h('h1', null, 'Open a binary cache'),
    h('p', { class: 'muted' }, 'Everything is read in this browser: nothing is uploaded, and nothing but the cache is fetched.'),
    openError ? h('div', { class: 'notice bad', id: 'open-error' }, openError) : null,
    loginFor ? loginView(loginFor, () => openHttp(loginFor)) : null,
    h('div', { class: 'open-grid' },
      h('section', { class: 'card' },
        h('h2', null, 'By URL'),
        h('form', { onsubmit: (e) => { e.preventDefault(); openUrl(urlInput.value.trim()); } },
          urlInput, h('button', { type: 'submit', class: 'primary' }, 'Open')),
        h('p', { class: 'muted' }, 'nar-tool serve, or any binary cache that allows cross-origin requests (CORS). ',
          'A cache other than nar-tool serve cannot be listed: you will be asked for store paths to start from.')),
      h('section', { class: 'card' },
        h('h2', null, 'A local folder'),
        h('button', { type: 'button', id: 'choose-folder', onclick: () => folder.click() }, 'Choose a cache folder…'), folder,
        h('div', { class: 'dropzone' }, 'or drop the folder anywhere on this page')),
      canRoots ? h('section', { class: 'card', id: 'roots-card' },
        h('h2', null, 'Roots'),
        h('p', { class: 'muted' }, `${app.cache.label} cannot be listed. Give store paths (or hash parts), one per line: their closures are loaded.`),
        rootsInput,
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'load-roots', onclick: async () => {
          const roots = rootsInput.value.split(/[\s,]+/).filter(Boolean);
          try {
            await addRoots(roots);
            if (app.cache.source.kind === 'http') {
              const u = new URL(location.href);
              const all = [...(u.searchParams.get('roots')?.split(',').filter(Boolean) ?? []), ...roots];
              u.searchParams.set('roots', [...new Set(all)].join(','));
              u.hash = '#/';
              history.replaceState(null, '', u.href);
            }
            location.hash = '#/';
            render();
          } catch (e) {
            openError = errorMessage(e);
            render();
          }
        } }, 'Load closures'))) : null));
}

function noCacheView() {
  return openView(new URLSearchParams());
}

// ---------------------------------------------------------------- routing

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, params: new URLSearchParams(query), raw };
}

function parentRoute() {
  const { parts } = parseRoute();
  if (parts[0] === 'path' && parts.length > 3) return '#/' + parts.slice(0, -1).map(encodeURIComponent).join('/');
  if (parts[0] === 'path' && parts.length === 3) return `#/path/${parts[1]}`;
  return '#/';
}

export function render() {
  const { parts, params } = parseRoute();
  const pv = currentPathsView();
  if (pv && main.contains(pv.el)) pv.scrollTop = pv.table.el.scrollTop;
  main.className = '';
  for (const a of document.querySelectorAll('.bar nav a')) a.removeAttribute('aria-current');
  const nav = (id) => document.getElementById(id)?.setAttribute('aria-current', 'page');
  const route = parts[0] ?? '';
  const routeKey = location.hash;
  const changed = routeKey !== lastRoute;
  lastRoute = routeKey;

  if (!app.wasm) return;
  if (route === 'keys') {
    nav('nav-keys');
    main.replaceChildren(keysView());
  } else if (route === 'open' || (!app.cache && !loading) || (route === '' && app.cache && !loading && !app.cache.listed && !app.cache.entries.length)) {
    nav('nav-open');
    main.replaceChildren(route === 'open' ? openView(params) : noCacheView());
  } else if (loading) {
    main.replaceChildren(h('p', { class: 'muted loading' }, `Opening ${app.cache?.label ?? ''}…`));
  } else if (route === 'verify') {
    nav('nav-verify');
    main.replaceChildren(verifyView());
  } else if (route === 'cache') {
    main.replaceChildren(cacheView());
  } else if (route === 'path' && parts[1]) {
    if (parts[2] === 'files') main.replaceChildren(filesView(parts[1], parts.slice(3)));
    else main.replaceChildren(pathView(parts[1]));
    if (changed) main.scrollTop = 0;
  } else {
    nav('nav-paths');
    main.className = 'table-view';
    const v = pathsView();
    main.replaceChildren(v.el);
    v.table.el.scrollTop = v.scrollTop;
    v.table.schedule(true);
    if (focusTable) {
      focusTable = false;
      v.table.focusActive();
    }
  }
  if (changed && route !== '' && document.activeElement !== search) main.focus({ preventScroll: true });
  const h1 = main.querySelector('h1')?.textContent;
  document.title = `${route === '' || !h1 ? 'Store paths' : h1} · nar-tool inspector`;
}
app.rerender = render;

// ---------------------------------------------------------------- keyboard, search, drop

function typing(el) {
  return el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
}

/** Keys that move in the table, from anywhere on the paths view (not only once it has the focus). */
const TABLE_MOVES = { ArrowDown: 0, ArrowUp: 0, j: 0, k: 0, PageDown: 0, PageUp: 0, Home: 0, End: 0 };

document.addEventListener('keydown', (e) => {
  const plain = !e.ctrlKey && !e.metaKey && !e.altKey;
  if (e.key === '/' && !typing(document.activeElement) && plain) {
    e.preventDefault();
    search.focus();
    search.select();
  } else if (e.key in TABLE_MOVES && plain && !typing(document.activeElement) && !e.defaultPrevented) {
    // The table handles its own keys; elsewhere (nothing focused yet, the page, a heading) the
    // first one gives the focus to its active row.
    const v = currentPathsView();
    if (!v || !main.contains(v.el) || v.table.el.contains(document.activeElement)) return;
    e.preventDefault();
    v.table.focusActive();
  } else if (e.key === 'Escape') {
    if (document.activeElement === search) {
      if (search.value) {
        search.value = '';
        currentPathsView()?.setQuery('');
      } else {
        currentPathsView()?.table.focusActive();
      }
      e.preventDefault();
      return;
    }
    if (typing(document.activeElement)) {
      document.activeElement.blur();
      return;
    }
    const { parts } = parseRoute();
    if (parts.length) {
      e.preventDefault();
      const back = parentRoute();
      focusTable = back === '#/';
      location.hash = back;
    }
  }
});

search.addEventListener('input', () => {
  if (!app.cache || loading) return;
  if (parseRoute().parts.length) location.hash = '#/';
  const v = pathsView();
  v.setQuery(search.value);
});
search.addEventListener('keydown', (e) => {
  const v = currentPathsView();
  if (!v) return;
  if (e.key === 'ArrowDown') {
    e.preventDefault();
    v.table.setActive(0, true);
  } else if (e.key === 'Enter') {
    e.preventDefault();
    const first = v.table.rows.at(0);
    if (first) location.hash = `#/path/${first.hash}`;
  }
});

window.addEventListener('hashchange', render);

const overlay = document.getElementById('drop-overlay');
let dragDepth = 0;
window.addEventListener('dragenter', (e) => {
  if (!e.dataTransfer?.types.includes('Files')) return;
  dragDepth++;
  overlay.hidden = false;
});
window.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    overlay.hidden = true;
  }
});
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', async (e) => {
  e.preventDefault();
  dragDepth = 0;
  overlay.hidden = true;
  const pairs = await dropped(e.dataTransfer);
  if (pairs.length) await openFiles(pairs);
});

// ---------------------------------------------------------------- boot

async function boot() {
  try {
    app.wasm = await loadWasm();
  } catch (e) {
    main.replaceChildren(h('div', { class: 'notice bad', id: 'wasm-error' },
      h('strong', null, 'The WebAssembly build could not be loaded. '), errorMessage(e), h('br'),
      'Build it at the repository root with ', h('code', null, 'wasm-pack build --target web --out-dir pkg/wasm --no-opt'),
      '; nar-tool serve serves the package pkg/ at /_nar-tool/pkg/ (or copy pkg/browser.js, pkg/lib/ and pkg/wasm/ to www/pkg/).'));
    return;
  }
  const params = new URLSearchParams(location.search);
  const roots = (params.get('roots') ?? '').split(',').filter(Boolean);
  const url = params.get('cache') ?? defaultCacheUrl();
  window.__inspector = { app, job };
  await openHttp(url, roots);
  if (!params.get('cache') && !app.cache) openError = null; // no cache here: just offer to open one
  render();
  document.body.dataset.ready = 'true';
}

boot();
