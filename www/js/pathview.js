// One store path: every narinfo field, signatures against the trusted keys, references and
// referrers, the closure (its size; a tree with each path's closure size and what it adds, as
// nix-tree shows them; a treemap of where its bytes go; why each path is in it), problems from
// the last verification. Every size of the closure is the core's (CacheGraph).

import { h, formatBytes, formatCount } from './util.js';
import { app, pathHref, filesHref, pathLink, sigStatus, sigLineStatus, statusPill, problemsOf } from './state.js';
import { startVerify } from './verify.js';
import { closureTreemap } from './treemap.js';
import { narLocation } from './urls.js';

/** Index mode, per cache: hash part → 'loading', 'done' or the Error of loading what its view needs. */
const loads = new WeakMap();

/** Index mode: starts `load` once for (cache, key) and shows the view again when it ends. */
function loadOnce(cache, key, load) {
  let m = loads.get(cache);
  if (!m) loads.set(cache, (m = new Map()));
  if (!m.has(key)) {
    m.set(key, 'loading');
    load().then(() => m.set(key, 'done'), (err) => m.set(key, err instanceof Error ? err : new Error(String(err))))
      .then(() => { if (app.cache === cache) app.rerender(); });
  }
  return m.get(key);
}

export function pathView(hash) {
  const cache = app.cache;
  if (cache.index) {
    const state = loadOnce(cache, hash, () => cache.loadPath(hash));
    if (state === 'loading') return h('p', { class: 'muted loading', id: 'path-loading' }, `Loading ${hash} from the index…`);
    if (state instanceof Error) {
      return h('div', null, h('h1', null, hash), h('div', { class: 'notice bad', id: 'path-error' }, `Cannot load it: ${state.message}`));
    }
  }
  const e = cache.byHash.get(hash);
  if (!e) {
    return h('div', null, h('h1', null, `${hash}: not in this cache`),
      h('p', null, cache.listed ? 'No narinfo has this hash part.' : 'Not loaded. ',
        cache.listed ? null : h('a', { href: `#/open?root=${hash}` }, 'Load it as a root')));
  }
  // Index mode: what the index says of a path whose narinfo is missing or unreadable.
  const indexed = !e.info && e.indexRow && cache.graphOf(e);
  if (!e.info) {
    return h('div', null, h('h1', null, indexed ? e.indexRow.baseName : e.file),
      h('div', { class: 'notice bad', id: 'narinfo-error' }, e.absent ? 'This narinfo is not in the cache' : `This narinfo cannot be parsed: ${e.error}`,
        indexed ? ' (the lookup index lists it: what follows is the index’s).' : '.'),
      e.text != null ? [h('h2', null, 'As stored'), h('pre', { class: 'content' }, e.text)] : null,
      problemsSection(e),
      indexed ? [links(e, cache.referencesOf(e)), closureSections(e, cache.closure(e))] : null);
  }
  const info = e.info;
  const closure = cache.closure(e);
  const where = narLocation(cache.source.kind === 'http' ? cache.source.base : null, info.url);

  return h('div', { class: 'path-view' },
    h('h1', null, e.baseName),
    h('div', { class: 'muted mono' }, info.storePath, ' ',
      h('button', { type: 'button', class: 'copy', title: 'Copy the store path', onclick: (ev) => copy(info.storePath, ev.target) }, 'copy')),
    h('div', { class: 'actions' },
      h('a', { class: 'button', href: filesHref(e.hash), id: 'browse-files' }, 'Browse files'),
      h('button', { type: 'button', onclick: () => verifyClosure(e, closure.paths) }, `Verify this closure (${closure.paths.length})`),
      downloadNar(where),
      e.hashMismatch ? h('span', { class: 'pill bad' }, 'file name and StorePath differ') : null),
    problemsSection(e),
    h('h2', null, 'narinfo'),
    fieldsTable(e),
    h('details', null, h('summary', null, 'As stored'), h('pre', { class: 'content' }, e.text)),
    links(e, info.references),
    closureSections(e, closure),
  );
}

/** References (store paths or base names) and referrers, as links. */
function links(e, references) {
  const cache = app.cache;
  if (cache.index) loadOnce(cache, `referrers ${e.hash}`, () => cache.loadReferrers(e));
  const referrers = cache.referrers(e)?.sort((a, b) => a.baseName.localeCompare(b.baseName));
  return h('div', { class: 'cols' },
    h('section', null,
      h('h2', null, `References (${references.length})`),
      references.length ? h('ul', { class: 'links' }, references.map((r) =>
        h('li', null, pathLink(r), r.slice(r.lastIndexOf('/') + 1, r.lastIndexOf('/') + 33) === e.hash ? h('span', { class: 'muted' }, ' (itself)') : null))) : h('p', { class: 'muted' }, 'None.')),
    h('section', null,
      h('h2', null, `Referrers (${referrers ? referrers.length : '…'})`),
      !referrers ? h('p', { class: 'muted', id: 'referrers-loading' }, 'Loading the whole index…')
        : referrers.length ? h('ul', { class: 'links' }, referrers.map((r) => h('li', null, h('a', { href: pathHref(r.hash) }, r.baseName))))
        : h('p', { class: 'muted' }, cache.listed ? 'None in this cache.' : 'None among the paths loaded.')));
}

/** The closure: its sizes, the tree of what each path adds, the treemap, every path with why it is there. */
function closureSections(e, closure) {
  const cache = app.cache;
  return [
    h('h2', null, 'Closure'),
    h('p', null,
      h('strong', { id: 'closure-count' }, formatCount(closure.paths.length)), ' paths, ',
      h('strong', { id: 'closure-size', title: `${closure.narSize} bytes` }, formatBytes(closure.narSize)), ' unpacked (NAR size), ',
      h('strong', { title: `${closure.fileSize} bytes` }, formatBytes(closure.fileSize)), ' to download',
      closure.missing.length ? [', ', h('span', { class: 'pill bad' }, `${closure.missing.length} missing`)] : null, '.'),
    closure.missing.length ? h('p', null, 'Missing from the cache: ', closure.missing.map((m) => [h('code', null, m), ' '])) : null,
    h('p', { class: 'muted' }, 'Each path: its own NAR size, its closure size, and what it adds to this closure (the paths only it brings in, as nix-tree counts them).'),
    closureTree(e, closure),
    h('h2', null, 'Where the closure’s bytes go'),
    h('p', { class: 'muted' }, 'Each box is what a path adds to the closure; inside it, the paths only it brings in.'),
    closureTreemap(cache.closureTree(e), {
      label: (p) => p.slice(p.lastIndexOf('/') + 1).slice(33),
      href: (p) => pathHref(p.slice(p.lastIndexOf('/') + 1, p.lastIndexOf('/') + 33)),
    }),
    h('details', null, h('summary', null, `All ${closure.paths.length} paths of the closure`),
      h('ul', { class: 'links', id: 'closure-paths' }, closure.paths.map((p) => h('li', null, pathLink(p), p === e.storePath ? null : whyButton(e, p))))),
  ];
}

function fieldsTable(e) {
  const info = e.info;
  const st = sigStatus(e);
  const row = (k, ...v) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, ...v));
  const bytes = (n) => (n == null ? '—' : [`${n} `, h('span', { class: 'muted' }, `(${formatBytes(n)})`)]);
  const url = urlCell(narLocation(app.cache.source.kind === 'http' ? app.cache.source.base : null, info.url), info.url);
  return h('table', { class: 'kv', id: 'narinfo-fields' },
    h('tbody', null,
      row('StorePath', info.storePath),
      row('URL', url),
      row('Compression', info.compression),
      row('FileHash', info.fileHash ?? '—'),
      row('FileSize', bytes(info.fileSize)),
      row('NarHash', info.narHash),
      row('NarSize', bytes(info.narSize)),
      row('References', info.references.length ? info.references.join(' ') : h('span', { class: 'muted' }, '(none)')),
      info.deriver ? row('Deriver', info.deriver) : null,
      info.system ? row('System', info.system) : null,
      info.sigs.length
        ? info.sigs.map((s) => row('Sig', s, ' ', st ? statusPill(sigLineStatus(st, s)) : null))
        : row('Sig', h('span', { class: 'muted' }, '(unsigned)')),
      st ? null : row('', h('span', { class: 'muted' }, 'Signatures are not checked: ', h('a', { href: '#/keys' }, 'add trusted keys'), '.')),
      st && st.error ? row('', h('span', { class: 'pill bad' }, st.error)) : null,
      info.ca ? row('CA', info.ca) : null,
      (info.extra ?? []).map(([k, v]) => row(k, v)),
      row('Fingerprint', fingerprint(info))));
}

/** The NAR's download link: the cache's file, or (shown as such) a file elsewhere; no link else. */
function downloadNar(where) {
  const source = app.cache.source;
  if (where.kind === 'inside' && source.kind === 'http') {
    return h('a', { class: 'button', href: source.fileUrl(where.path), download: where.path.split('/').pop(), id: 'download-nar' }, 'Download NAR file');
  }
  if (where.kind === 'elsewhere') {
    return h('a', { class: 'button', href: where.href, rel: 'noreferrer noopener', id: 'download-nar' }, `Download NAR file (from ${where.origin})`);
  }
  return null;
}

/** The URL field: a link when it leads somewhere that may be followed, else the text and why. */
function urlCell(where, url) {
  const source = app.cache.source;
  if (where.kind === 'inside') return source.kind === 'http' ? h('a', { href: source.fileUrl(where.path) }, url) : url;
  if (where.kind === 'elsewhere') {
    return [h('a', { href: where.href, rel: 'noreferrer noopener' }, url), ' ',
      h('span', { class: 'pill warn', id: 'url-elsewhere' }, `outside the cache, on ${where.origin}`)];
  }
  return [h('code', null, url), ' ', h('span', { class: 'pill bad', id: 'url-refused' }, `not followed: ${where.why}`)];
}

function fingerprint(info) {
  try {
    return app.wasm.fingerprint(info);
  } catch (err) {
    return h('span', { class: 'pill bad' }, err.message);
  }
}

function problemsSection(e) {
  const ps = problemsOf(e);
  if (!ps.length) return null;
  return h('div', { class: 'notice bad', id: 'path-problems' },
    h('strong', null, 'The last verification found:'),
    h('ul', null, ps.map((p) => h('li', null, h('code', null, p.kind), ' ', p.message))));
}

/**
 * The closure as a collapsible tree; children are built when a node is first opened, largest
 * closure first. Each node: its own NAR size, its closure size and what it adds to the root's
 * closure (its subtree in the core's dominator tree).
 */
function closureTree(root, closure) {
  const cache = app.cache;
  const added = new Map(cache.closureTree(root).map((n) => [n.path, n.added.narSize]));
  const sizes = (e, closureSize) => h('span', { class: 'size' },
    h('span', { title: 'its NAR' }, formatBytes(e.narSize)), ' · ',
    h('span', { class: 'closure-size', title: `its closure: ${closureSize} bytes` }, `closure ${formatBytes(closureSize)}`), ' · ',
    h('span', { class: 'added-size', title: `${added.get(e.storePath) ?? 0} bytes: the paths only it brings into this closure` },
      `adds ${formatBytes(added.get(e.storePath) ?? 0)}`));
  const node = (base, closureSize, ancestors, open) => {
    const e = cache.entryOfBaseName(base);
    if (!e || !(e.info || e.light)) return h('div', { class: 'leaf' }, pathLink(base));
    const refs = cache.referencesOf(e).map((r) => r.slice(r.lastIndexOf('/') + 1)).filter((r) => r.slice(0, 32) !== e.hash);
    const label = [h('a', { href: pathHref(e.hash) }, e.baseName), sizes(e, closureSize)];
    if (!refs.length) return h('div', { class: 'leaf', dataset: { path: e.storePath } }, label);
    if (ancestors.has(e.hash)) return h('div', { class: 'leaf' }, label, h('span', { class: 'muted' }, ' (cycle)'));
    const d = h('details', { open, dataset: { path: e.storePath } }, h('summary', null, label, h('span', { class: 'size' }, ` · ${refs.length} refs`)));
    let filled = false;
    const fill = () => {
      if (filled) return;
      filled = true;
      const anc = new Set(ancestors).add(e.hash);
      const present = refs.map((r) => cache.entryOfBaseName(r)).map((x) => (x?.info || x?.light ? x.storePath : null));
      const known = present.filter(Boolean);
      const closures = cache.closureSizes(root, known);
      const each = new Map(known.map((p, i) => [p, closures[i].narSize]));
      const order = refs.map((r, i) => [r, present[i] ? each.get(present[i]) : -1])
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
      for (const [r, size] of order) d.append(node(r, size, anc, false));
    };
    if (open) fill();
    d.addEventListener('toggle', () => d.open && fill());
    return d;
  };
  return h('div', { class: 'tree', id: 'closure-tree' }, node(root.baseName, closure.narSize, new Set(), true));
}

/** A button that shows why `e` depends on `path`: the shortest chain of references, as nix why-depends. */
function whyButton(e, path) {
  const b = h('button', { type: 'button', class: 'why', title: 'The shortest chain of references that brings it into the closure' }, 'why?');
  b.addEventListener('click', () => {
    const chain = app.cache.whyDepends(e, path) ?? [];
    b.replaceWith(h('span', { class: 'why-chain' }, ': ', chain.map((p, i) => [i ? ' → ' : '', pathLink(p)])));
  });
  return b;
}

function verifyClosure(e, paths) {
  const names = paths.map((p) => app.cache.entryOfStorePath(p)).filter((x) => x).map((x) => x.file);
  startVerify({ only: names, label: `the closure of ${e.baseName} (${names.length} paths)` });
  location.hash = '#/verify';
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'copied';
  } catch {
    button.textContent = 'select and copy';
  }
  setTimeout(() => { button.textContent = 'copy'; }, 1500);
}

