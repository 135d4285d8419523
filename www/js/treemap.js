// A picture of where a closure's bytes go: a treemap of the closure's dominator tree (the core's
// CacheGraph.closureTree), as nix-du draws one. Each path is a box whose area is what it adds to
// the closure (its NAR and those of the paths only it brings in); the paths it brings in are
// boxes inside it. Laid out here (squarified: boxes near square, so sizes compare by eye), drawn
// as positioned elements, laid out again when the width changes.

import { h, formatBytes } from './util.js';

/** Below this many pixels a side, a box is not drawn. */
const MIN_SIDE = 3;
/** A box gets boxes inside it only when it is at least this large. */
const MIN_NEST = { w: 48, h: 34 };
const HEADER = 15;
const PAD = 2;
const MAX_DEPTH = 6;

/** How far from square a row of areas laid along `side` is (Bruls, Huizing and van Wijk). */
function worst(row, side) {
  let sum = 0;
  let max = 0;
  let min = Infinity;
  for (const a of row) {
    sum += a;
    max = Math.max(max, a);
    min = Math.min(min, a);
  }
  return Math.max((side * side * max) / (sum * sum), (sum * sum) / (side * side * min));
}

/**
 * Squarified layout of `values` (positive, in decreasing order) in the rectangle (x, y, w, h):
 * a rectangle `{ x, y, w, h }` for each value, in the same order, with areas in proportion.
 */
export function squarify(values, x, y, w, h) {
  const total = values.reduce((a, b) => a + b, 0);
  const out = [];
  if (!(total > 0) || w <= 0 || h <= 0) return values.map(() => ({ x, y, w: 0, h: 0 }));
  const areas = values.map((v) => (v * w * h) / total);
  let i = 0;
  while (i < areas.length) {
    const side = Math.min(w, h);
    const row = [areas[i]];
    let best = worst(row, side);
    let j = i + 1;
    for (; j < areas.length; j++) {
      const next = worst([...row, areas[j]], side);
      if (next > best) break;
      row.push(areas[j]);
      best = next;
    }
    const rowArea = row.reduce((a, b) => a + b, 0);
    if (w >= h) {
      const cw = rowArea / h;
      let cy = y;
      for (const a of row) {
        out.push({ x, y: cy, w: cw, h: a / cw });
        cy += a / cw;
      }
      x += cw;
      w -= cw;
    } else {
      const rh = rowArea / w;
      let cx = x;
      for (const a of row) {
        out.push({ x: cx, y, w: a / rh, h: rh });
        cx += a / rh;
      }
      y += rh;
      h -= rh;
    }
    i = j;
  }
  return out;
}

/**
 * The treemap of `nodes` (closureTree's, root first) as an element. `label(path)` names a path,
 * `href(path)` links to it.
 */
export function closureTreemap(nodes, { label, href }) {
  const children = new Map();
  for (const n of nodes) {
    if (n.dominator == null) continue;
    if (!children.has(n.dominator)) children.set(n.dominator, []);
    children.get(n.dominator).push(n);
  }
  for (const list of children.values()) list.sort((a, b) => b.added.narSize - a.added.narSize || (a.path < b.path ? -1 : 1));
  const el = h('div', { class: 'treemap', id: 'closure-treemap', role: 'img', 'aria-label': 'The closure’s NAR bytes by path: each box is what a path adds' });
  let drawnWidth = -1;

  const box = (n, r, depth, hue) => {
    const name = label(n.path);
    const a = h('a', {
      class: 'tm-box',
      href: href(n.path),
      title: `${name}\nadds ${formatBytes(n.added.narSize)} to the closure (its own NAR: ${formatBytes(n.narSize)})`,
      dataset: { path: n.path, added: String(n.added.narSize) },
    }, r.w > 40 && r.h > 12 ? h('span', { class: 'tm-label' }, `${name} `, h('span', { class: 'tm-size' }, formatBytes(n.added.narSize))) : null);
    Object.assign(a.style, {
      left: `${r.x}px`, top: `${r.y}px`, width: `${r.w}px`, height: `${r.h}px`,
      backgroundColor: `hsl(${hue} 55% ${Math.min(88, 62 + depth * 6)}%)`,
    });
    el.append(a);
    const kids = (children.get(n.path) ?? []).filter((k) => k.added.narSize > 0);
    if (!kids.length || depth >= MAX_DEPTH || r.w < MIN_NEST.w || r.h < MIN_NEST.h) return;
    // Inside, under its label: the paths it brings in, and its own NAR as the space left over.
    const inner = { x: r.x + PAD, y: r.y + HEADER, w: r.w - 2 * PAD, h: r.h - HEADER - PAD };
    const items = [...kids.map((k, i) => ({ k, i, v: k.added.narSize })), { k: null, v: n.narSize }].filter((it) => it.v > 0).sort((a, b) => b.v - a.v);
    const rects = squarify(items.map((it) => it.v), inner.x, inner.y, inner.w, inner.h);
    items.forEach(({ k, i }, j) => {
      if (k && rects[j].w >= MIN_SIDE && rects[j].h >= MIN_SIDE) box(k, rects[j], depth + 1, depth === 0 ? (i * 67) % 360 : hue);
    });
  };

  const observer = new ResizeObserver(() => draw());
  const draw = () => {
    if (!el.isConnected && drawnWidth >= 0) {
      observer.disconnect();
      return;
    }
    const width = el.clientWidth;
    if (!width || width === drawnWidth || !nodes.length) return;
    drawnWidth = width;
    el.replaceChildren();
    box(nodes[0], { x: 0, y: 0, w: width, h: el.clientHeight }, 0, 210);
  };
  observer.observe(el);
  return el;
}
