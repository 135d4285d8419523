// A virtualised table: only the rows in view (plus a margin) are in the DOM, so 100 000 rows
// scroll as fast as 10. Rows have a fixed height. Keyboard: a roving focus over the rows (arrows,
// Page Up/Down, Home/End), Enter opens; headers are buttons that sort.

import { h } from './util.js';

const OVERSCAN = 12;

export class VirtualTable {
  /**
   * columns: [{ key, label, num?, width?, value(row) (for sorting), cell(row) → string|Node, title? }]
   * (a column's `<col>` has the class `col-<key>`, for widths set in CSS instead of `width`)
   * opts: { rowHeight, onOpen(row), onSort(key, dir), rowClass(row), rowLabel(row), href(row) }
   */
  constructor(columns, opts) {
    this.columns = columns;
    this.opts = opts;
    this.rows = [];
    this.active = 0;
    this.range = [-1, -1];
    this.sortKey = opts.sortKey ?? columns[0].key;
    this.sortDir = opts.sortDir ?? 1;
    this.rowHeight = opts.rowHeight ?? 28;

    this.thead = h('thead', null, h('tr', null, columns.map((c) => this.headerCell(c))));
    this.tbody = h('tbody');
    this.table = h('table', { class: 'paths', role: 'grid', 'aria-label': opts.label ?? 'rows' },
      h('colgroup', null, columns.map((c) => h('col', { class: `col-${c.key}`, style: c.width ? { width: c.width } : null }))),
      this.thead, this.tbody);
    this.el = h('div', { class: 'vt' }, this.table);
    this.el.addEventListener('scroll', () => this.schedule());
    this.el.addEventListener('keydown', (e) => this.onKey(e));
    this.tbody.addEventListener('click', (e) => {
      const tr = e.target.closest('tr.row');
      if (!tr || e.target.closest('a')) return;
      this.setActive(Number(tr.dataset.index), true);
      this.opts.onOpen(this.rows.at(this.active));
    });
    this.tbody.addEventListener('focusin', (e) => {
      const tr = e.target.closest('tr.row');
      if (tr) this.active = Number(tr.dataset.index);
    });
    this.resizeObserver = new ResizeObserver(() => this.schedule(true));
    this.resizeObserver.observe(this.el);
  }

  headerCell(c) {
    const th = h('th', { class: c.num ? 'num' : null, scope: 'col', 'aria-sort': 'none' },
      h('button', { type: 'button', title: `Sort by ${c.label.toLowerCase()}`, onclick: () => this.sortBy(c.key) }, c.label));
    th.dataset.key = c.key;
    return th;
  }

  sortBy(key) {
    this.sortDir = key === this.sortKey ? -this.sortDir : 1;
    this.sortKey = key;
    this.opts.onSort?.(this.sortKey, this.sortDir);
  }

  /**
   * Sorts rows in place by the current column (stable: ties keep the name order). `rows` may
   * also be any object with `length` and `at(i)` (rows made on demand), sorted by its maker.
   */
  sort(rows) {
    const col = this.columns.find((c) => c.key === this.sortKey) ?? this.columns[0];
    const dir = this.sortDir;
    const keyed = rows.map((r, i) => [col.value(r), i, r]);
    keyed.sort((a, b) => {
      const x = a[0];
      const y = b[0];
      let c;
      if (x == null || y == null) c = x == null ? (y == null ? 0 : 1) : -1; // empty last, both ways
      else if (typeof x === 'number' && typeof y === 'number') c = dir * (x - y);
      else c = dir * (x < y ? -1 : x > y ? 1 : 0);
      return c || a[1] - b[1];
    });
    for (let i = 0; i < rows.length; i++) rows[i] = keyed[i][2];
    this.showSort();
    return rows;
  }

  /** Marks the sorted column's header. */
  showSort() {
    const dir = this.sortDir;
    for (const th of this.thead.querySelectorAll('th')) {
      const on = th.dataset.key === this.sortKey;
      th.setAttribute('aria-sort', on ? (dir > 0 ? 'ascending' : 'descending') : 'none');
      th.querySelector('button').textContent = this.columns.find((c) => c.key === th.dataset.key).label + (on ? (dir > 0 ? ' ▲' : ' ▼') : '');
    }
  }

  setRows(rows, keepActive = false) {
    this.rows = rows;
    this.table.setAttribute('aria-rowcount', String(rows.length + 1));
    if (!keepActive) this.active = 0;
    this.active = Math.min(this.active, Math.max(0, rows.length - 1));
    this.range = [-1, -1];
    this.render();
  }

  schedule(force) {
    if (force) this.range = [-1, -1];
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  headerHeight() {
    return this.thead.getBoundingClientRect().height || this.rowHeight;
  }

  render() {
    const rh = this.rowHeight;
    const top = Math.max(0, this.el.scrollTop - this.headerHeight());
    // Never more than a screenful, even when the container is not (yet) sized by the layout.
    const view = Math.min(this.el.clientHeight || 800, window.innerHeight || 800);
    const start = Math.max(0, Math.floor(top / rh) - OVERSCAN);
    const end = Math.min(this.rows.length, Math.ceil((top + view) / rh) + OVERSCAN);
    if (start === this.range[0] && end === this.range[1]) return;
    const hadFocus = this.tbody.contains(document.activeElement);
    this.range = [start, end];
    const trs = [];
    if (start > 0) trs.push(spacer(start * rh, this.columns.length));
    for (let i = start; i < end; i++) trs.push(this.renderRow(i));
    if (end < this.rows.length) trs.push(spacer((this.rows.length - end) * rh, this.columns.length));
    this.tbody.replaceChildren(...trs);
    if (hadFocus) this.focusActive(false);
  }

  renderRow(i) {
    const row = this.rows.at(i);
    const cls = this.opts.rowClass?.(row);
    const tr = h('tr', {
      class: cls ? `row ${cls}` : 'row',
      tabindex: i === this.active ? '0' : '-1',
      'aria-rowindex': String(i + 2),
      'aria-label': this.opts.rowLabel?.(row),
      style: { height: `${this.rowHeight}px` },
    }, this.columns.map((c) => {
      const v = c.cell(row);
      return h('td', { class: [c.num ? 'num' : '', c.className ?? ''].join(' ').trim() || null, title: c.title?.(row) }, v);
    }));
    tr.dataset.index = String(i);
    return tr;
  }

  rowElement(i) {
    return this.tbody.querySelector(`tr.row[data-index="${i}"]`);
  }

  setActive(i, focus) {
    if (!this.rows.length) return;
    const old = this.rowElement(this.active);
    if (old) old.tabIndex = -1;
    this.active = Math.max(0, Math.min(this.rows.length - 1, i));
    this.scrollIntoView(this.active);
    this.render();
    const tr = this.rowElement(this.active);
    if (tr) {
      tr.tabIndex = 0;
      if (focus) tr.focus({ preventScroll: true });
    }
  }

  focusActive(scroll = true) {
    if (!this.rows.length) return;
    if (scroll) this.scrollIntoView(this.active);
    this.render();
    const tr = this.rowElement(this.active);
    if (tr) {
      tr.tabIndex = 0;
      tr.focus({ preventScroll: true });
    }
  }

  scrollIntoView(i) {
    const rh = this.rowHeight;
    const hh = this.headerHeight();
    const rowTop = hh + i * rh;
    const viewTop = this.el.scrollTop + hh;
    const viewBottom = this.el.scrollTop + this.el.clientHeight;
    if (rowTop < viewTop) this.el.scrollTop = rowTop - hh;
    else if (rowTop + rh > viewBottom) this.el.scrollTop = rowTop + rh - this.el.clientHeight;
  }

  onKey(e) {
    if (!e.target.closest('tbody')) return;
    const page = Math.max(1, Math.floor((this.el.clientHeight - this.headerHeight()) / this.rowHeight) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, j: 1, k: -1 };
    if (e.key in moves && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      this.setActive(this.active + moves[e.key], true);
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      this.setActive(e.key === 'Home' ? 0 : this.rows.length - 1, true);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (this.rows.at(this.active)) this.opts.onOpen(this.rows.at(this.active));
    }
  }

  destroy() {
    this.resizeObserver.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}

function spacer(height, cols) {
  return h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: String(cols), style: { height: `${height}px` } }));
}
