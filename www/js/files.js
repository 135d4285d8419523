// Inside a NAR: the file tree with sizes and modes (a directory's size is that of the files in
// it, at any depth), sortable by name or size, text files shown, binaries as hex, any file
// downloadable, symlinks followed within the NAR (and to other paths of the cache).

import { h, formatBytes, hexDump, asText, modeString, errorMessage } from './util.js';
import { app, pathHref, filesHref } from './state.js';
import { NarAccess, NotFetched, nodeAt } from './nar.js';
import { allowOrigin } from './urls.js';

const TEXT_LIMIT = 1024 * 1024;
const HEX_LIMIT = 64 * 1024;
const accesses = new Map();
let blobUrl = null;
/** How directories are sorted: by `name` (the NAR's order) or `size`, up (1) or down (-1). */
const order = { key: 'name', dir: 1 };
/** Directory node → { size, files }: the regular files beneath it, at any depth. */
const totals = new WeakMap();

/** The bytes and number of regular files beneath `dir` (iterative: NARs nest deep). */
export function directoryTotals(dir) {
  if (totals.has(dir)) return totals.get(dir);
  // Post-order: a directory is summed once all of its subdirectories are.
  const stack = [[dir, false]];
  while (stack.length) {
    const [node, visited] = stack.pop();
    if (totals.has(node)) continue;
    const subdirs = Object.values(node.entries).filter((n) => n.type === 'directory' && !totals.has(n));
    if (!visited && subdirs.length) {
      stack.push([node, true], ...subdirs.map((n) => [n, false]));
      continue;
    }
    let size = 0;
    let files = 0;
    for (const n of Object.values(node.entries)) {
      if (n.type === 'regular') {
        size += n.size;
        files += 1;
      } else if (n.type === 'directory') {
        const t = totals.get(n);
        size += t.size;
        files += t.files;
      }
    }
    totals.set(node, { size, files });
  }
  return totals.get(dir);
}

function access(e) {
  let a = accesses.get(e.hash);
  if (!a || a.cache !== app.cache) {
    a = new NarAccess(app.wasm, app.cache, e);
    accesses.set(e.hash, a);
    if (accesses.size > 4) accesses.delete(accesses.keys().next().value);
  }
  return a;
}

export function forgetNars() {
  accesses.clear();
}

/** The files view: `parts` are the path components inside the NAR. Renders into `el`. */
export function filesView(hash, parts) {
  const e = app.cache.byHash.get(hash);
  const el = h('div', { class: 'files-view' });
  if (!e || !e.info) {
    el.append(h('h1', null, `${hash}: not in this cache`));
    return el;
  }
  const status = h('p', { class: 'muted', id: 'nar-status' }, 'Reading the listing…');
  el.append(h('h1', null, h('a', { href: pathHref(e.hash) }, e.baseName)), crumbs(e, parts), status);
  const a = access(e);
  const progress = (done, total) => {
    status.textContent = `Reading the NAR… ${formatBytes(done)}${total ? ` of ${formatBytes(total)}` : ''}`;
  };
  a.listingOnce(progress).then(
    () => show(el, status, e, a, parts),
    (err) => status.replaceWith(failure('Cannot read this NAR', err)),
  );
  return el;
}

/** Why the NAR could not be read; for a NAR elsewhere, what it is and a way to allow it. */
function failure(what, err) {
  if (err instanceof NotFetched) {
    return h('div', { class: 'notice', id: 'nar-elsewhere' }, 'The NAR is outside the cache, at ', h('code', null, err.href),
      ': not fetched. ', h('button', { type: 'button', id: 'allow-origin', onclick: () => allowOrigin(err.origin) }, `Allow fetching from ${err.origin}`));
  }
  return h('div', { class: 'notice bad' }, `${what}: ${errorMessage(err)}`);
}

function crumbs(e, parts) {
  const out = [h('a', { href: filesHref(e.hash) }, '/')];
  parts.forEach((p, i) => {
    if (i) out.push(h('span', { class: 'muted' }, '/'));
    out.push(i === parts.length - 1 ? h('span', null, p) : h('a', { href: filesHref(e.hash, parts.slice(0, i + 1)) }, p));
  });
  return h('nav', { class: 'crumbs', 'aria-label': 'Location in the NAR' }, out);
}

function listingNote(e, a) {
  const bits = [`Listing from ${a.listingFrom}.`];
  if (a.narCheck) {
    const ok = a.narCheck.narHash === e.info.narHash && a.narCheck.narSize === e.info.narSize;
    bits.push(' NAR read: ', ok
      ? h('span', { class: 'pill ok' }, 'hash and size match the narinfo')
      : h('span', { class: 'pill bad' }, `${a.narCheck.narHash}, ${a.narCheck.narSize} bytes: differs from the narinfo`));
  }
  return bits;
}

function show(el, status, e, a, parts) {
  const r = a.resolve(parts);
  status.replaceChildren(...listingNote(e, a));
  if (r.error) {
    el.append(h('div', { class: 'notice bad' }, r.error));
    return;
  }
  const link = parts.length ? nodeAt(a.listing, parts) : a.listing.root;
  if (link && link.type === 'symlink') {
    el.append(h('p', null, h('code', null, '/' + parts.join('/')), ' is a symlink to ', h('code', null, link.target),
      r.outside ? null : [' → ', h('a', { href: filesHref(e.hash, r.parts) }, '/' + r.parts.join('/'))]));
  }
  if (r.outside) {
    el.append(outsideNote(r.outside));
    return;
  }
  const node = r.node;
  if (node.type === 'directory') el.append(directoryTable(e, a, r.parts, node));
  else fileContents(el, e, a, r.parts, node);
}

/** A symlink leaving this NAR: a link into the other path when the cache has it. */
function outsideNote(target) {
  const storeDir = app.cache.storeDir;
  const m = target.startsWith(storeDir + '/') ? /^([^/]+)(?:\/(.*))?$/.exec(target.slice(storeDir.length + 1)) : null;
  const other = m ? app.cache.entryOfBaseName(m[1]) : null;
  return h('div', { class: 'notice' }, 'The link leads outside this store path, to ', h('code', null, target), '. ',
    other && other.info
      ? h('a', { href: filesHref(other.hash, m[2] ? m[2].split('/') : []), id: 'follow-outside' }, `Open it in ${other.baseName}`)
      : 'That path is not in this cache.');
}

/** A node's size for the listing: a file's, or the files' beneath a directory; null for a symlink. */
function sizeOf(n) {
  if (n.type === 'regular') return n.size;
  if (n.type === 'directory') return directoryTotals(n).size;
  return null;
}

function directoryTable(e, a, parts, dir) {
  const names = Object.keys(dir.entries); // the listing keeps the NAR's (byte) order
  if (order.key === 'size') {
    names.sort((x, y) => order.dir * ((sizeOf(dir.entries[x]) ?? -1) - (sizeOf(dir.entries[y]) ?? -1)) || (x < y ? -1 : 1));
  } else if (order.dir < 0) {
    names.reverse();
  }
  const rows = names.map((name) => {
    const n = dir.entries[name];
    const target = [...parts, name];
    let what = null;
    if (n.type === 'symlink') {
      what = [' → ', h('span', { class: 'muted' }, n.target)];
    } else if (n.type === 'directory') {
      what = '/';
    }
    const size = sizeOf(n);
    const files = n.type === 'directory' ? directoryTotals(n).files : null;
    return h('tr', { dataset: { name, size: size ?? '' } },
      h('td', { class: 'mode' }, modeString(n)),
      h('td', { class: 'num' }, size == null ? '' : String(size)),
      h('td', { class: 'num muted', title: files == null ? null : `${files} file${files === 1 ? '' : 's'} in it, at any depth` },
        size == null ? '' : formatBytes(size), files == null ? null : h('span', { class: 'files-count' }, ` (${files})`)),
      h('td', { class: 'name' }, h('a', { href: filesHref(e.hash, target) }, name), what));
  });
  const up = parts.length ? h('tr', null, h('td', { class: 'mode' }), h('td'), h('td'),
    h('td', { class: 'name' }, h('a', { href: filesHref(e.hash, parts.slice(0, -1)) }, '..'))) : null;
  const total = directoryTotals(dir);
  const sortButton = (key, label, cls) => {
    const on = order.key === key;
    return h('th', { class: cls, 'aria-sort': on ? (order.dir > 0 ? 'ascending' : 'descending') : 'none' },
      h('button', { type: 'button', class: 'sort', id: `sort-${key}`, title: `Sort by ${key}`, onclick: () => {
        order.dir = on ? -order.dir : key === 'size' ? -1 : 1;
        order.key = key;
        table.replaceWith(directoryTable(e, a, parts, dir));
        document.getElementById(`sort-${key}`)?.focus();
      } }, label + (on ? (order.dir > 0 ? ' ▲' : ' ▼') : '')));
  };
  const table = h('table', { class: 'files', id: 'file-list' },
    h('thead', null, h('tr', null, h('th', null, 'Mode'), sortButton('size', 'Size', 'num'),
      h('th', { class: 'num', title: `${total.files} files, ${total.size} bytes` }, formatBytes(total.size)),
      sortButton('name', `Name (${names.length})`, null))),
    h('tbody', null, up, rows));
  table.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const links = [...table.querySelectorAll('td.name a')];
    const i = links.indexOf(document.activeElement);
    const j = i < 0 ? 0 : Math.max(0, Math.min(links.length - 1, i + (ev.key === 'ArrowDown' ? 1 : -1)));
    links[j]?.focus();
    ev.preventDefault();
  });
  return table;
}

function fileContents(el, e, a, parts, node) {
  const name = parts.length ? parts[parts.length - 1] : e.baseName;
  const body = h('div', { id: 'file-contents' }, h('p', { class: 'muted' }, 'Reading…'));
  const download = h('button', { type: 'button', id: 'download-file' }, 'Download');
  download.addEventListener('click', async () => {
    download.disabled = true;
    try {
      const bytes = await a.readFile(parts, node);
      saveBytes(bytes, name);
    } catch (err) {
      body.prepend(h('div', { class: 'notice bad' }, errorMessage(err)));
    } finally {
      download.disabled = false;
    }
  });
  el.append(
    h('table', { class: 'kv' }, h('tbody', null,
      h('tr', null, h('th', null, 'Mode'), h('td', null, modeString(node), node.executable ? ' (executable)' : '')),
      h('tr', null, h('th', null, 'Size'), h('td', null, `${node.size} bytes (${formatBytes(node.size)})`)),
      node.narOffset != null ? h('tr', null, h('th', null, 'NAR offset'), h('td', null, String(node.narOffset))) : null)),
    h('div', { class: 'actions' }, download),
    body);
  a.readFile(parts, node, Math.max(TEXT_LIMIT, HEX_LIMIT)).then(
    (bytes) => {
      const shown = bytes.subarray(0, TEXT_LIMIT);
      const text = asText(shown);
      const cut = bytes.length > (text != null ? TEXT_LIMIT : HEX_LIMIT) || node.size > bytes.length;
      const note = cut ? h('p', { class: 'muted' }, `Showing the first ${formatBytes(text != null ? TEXT_LIMIT : HEX_LIMIT)}; download for the rest.`) : null;
      if (node.size === 0) body.replaceChildren(h('p', { class: 'muted' }, '(empty file)'));
      else if (text != null) body.replaceChildren(note ?? '', h('pre', { class: 'content text', tabindex: '0' }, text));
      else body.replaceChildren(h('p', { class: 'muted' }, 'Binary: hex dump.'), note ?? '', h('pre', { class: 'content hex', tabindex: '0' }, hexDump(bytes, HEX_LIMIT)));
    },
    (err) => body.replaceChildren(failure('Cannot read this file', err)),
  );
}

function saveBytes(bytes, name) {
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const link = h('a', { href: blobUrl, download: name, style: { display: 'none' } });
  document.body.append(link);
  link.click();
  link.remove();
}
