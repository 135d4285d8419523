// Small helpers: DOM building, number formatting, a bounded-concurrency pool.

/** Creates an element: h('a', { href: '#', class: 'x', onclick: f }, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : String(c));
  }
}

/** 1234567 → "1.2 MiB" (bytes below 1 KiB as "123 B"). */
export function formatBytes(n) {
  if (n == null || Number.isNaN(n)) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** 1234567 → "1 234 567" */
export function formatCount(n) {
  return n == null ? '—' : n.toLocaleString('en-US').replace(/,/g, '\u202f');
}

/** Runs fn over items with at most `limit` calls in flight; onDone(i) after each. */
export async function pool(items, limit, fn, onDone) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
      if (onDone) onDone(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function concat(parts, total) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total ?? parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** A classic hex dump: offset, 16 bytes in hex, the printable ASCII. */
export function hexDump(bytes, max = 64 * 1024) {
  const n = Math.min(bytes.length, max);
  const lines = [];
  const hex = (b) => b.toString(16).padStart(2, '0');
  for (let o = 0; o < n; o += 16) {
    const row = bytes.subarray(o, Math.min(o + 16, n));
    let hx = '';
    let asc = '';
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        hx += hex(row[i]) + (i === 7 ? '  ' : ' ');
        asc += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : '.';
      } else {
        hx += i === 7 ? '    ' : '   ';
      }
    }
    lines.push(`${o.toString(16).padStart(8, '0')}  ${hx} |${asc}|`);
  }
  return lines.join('\n');
}

/** The bytes as text when they look like text (UTF-8, no NUL in the first 8 KiB), else null. */
export function asText(bytes) {
  const head = bytes.subarray(0, 8192);
  if (head.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // A multi-byte character cut at the end of a prefix is still text.
    if (bytes.length > 4) {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, bytes.length - 3)) + '…';
      } catch { /* binary */ }
    }
    return null;
  }
}

/** `-r-xr-xr-x` style modes as `nix nar ls -l` prints them. */
export function modeString(node) {
  if (node.type === 'directory') return 'dr-xr-xr-x';
  if (node.type === 'symlink') return 'lrwxrwxrwx';
  return node.executable ? '-r-xr-xr-x' : '-r--r--r--';
}

export function errorMessage(e) {
  return e && e.message ? e.message : String(e);
}
