// The trusted keys view: keys typed or pasted one per line or as nix.conf's space-separated
// `trusted-public-keys = …` line, each checked by the wasm core (parsePublicKey) before it is
// saved; a key that is not one is said so, and not saved.

import { h, errorMessage } from './util.js';
import { app, saveKeys } from './state.js';

/**
 * The words of what was typed that are meant as keys: one per line or space-separated, a
 * nix.conf setting's name and `=` (`trusted-public-keys =`, `extra-…`) and `#` comments dropped;
 * each once, in order.
 */
export function keyWords(text) {
  const words = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').replace(/^\s*(extra-)?trusted-public-keys\s*=/, '');
    words.push(...line.split(/\s+/).filter(Boolean));
  }
  return [...new Set(words)];
}

/** The words split into valid keys and `[word, why]` for the others (the core's message). */
function checkKeys(words) {
  const valid = [];
  const invalid = [];
  for (const w of words) {
    try {
      valid.push(app.wasm.parsePublicKey(w).key);
    } catch (e) {
      invalid.push([w, errorMessage(e)]);
    }
  }
  return { valid, invalid };
}

export function keysView() {
  const area = h('textarea', { id: 'keys-input', rows: '6', spellcheck: 'false', 'aria-label': 'Trusted public keys' }, app.keys.join('\n'));
  const status = h('div', { id: 'keys-status', 'aria-live': 'polite' });
  const names = new Map();
  for (const e of app.cache?.entries ?? []) {
    for (const s of e.info?.sigs ?? []) {
      const n = s.slice(0, s.indexOf(':'));
      names.set(n, (names.get(n) ?? 0) + 1);
    }
  }
  const save = () => {
    const { valid, invalid } = checkKeys(keyWords(area.value));
    saveKeys(valid);
    // The saved keys one per line; what was not saved stays below them, to be corrected.
    area.value = [...valid, ...invalid.map(([w]) => w)].join('\n');
    status.replaceChildren(
      h('span', { class: invalid.length ? 'muted' : 'pill ok' }, `Saved ${valid.length} key${valid.length === 1 ? '' : 's'}.`),
      invalid.length
        ? h('div', { class: 'notice bad', id: 'keys-invalid' }, `Not saved: ${invalid.length} ${invalid.length === 1 ? 'is not a key' : 'are not keys'}.`,
          h('ul', null, invalid.map(([w, why]) => h('li', null, h('code', null, w), ': ', why))))
        : null);
  };
  return h('div', null,
    h('h1', null, 'Trusted public keys'),
    h('p', null, 'As in nix.conf’s ', h('code', null, 'trusted-public-keys'), ': ', h('code', null, 'name:base64'),
      ', one per line or separated by spaces (a whole ', h('code', null, 'trusted-public-keys = …'), ' line may be pasted). ',
      'Signatures are checked against them in the table, on each path and when verifying. ',
      'They are kept in this browser only (localStorage).'),
    area,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'keys-save', onclick: save }, 'Save')),
    status,
    names.size ? h('p', { class: 'muted' }, 'Signatures in this cache are by: ',
      [...names].map(([n, c], i) => [i ? ', ' : '', h('code', null, n), ` (${c})`]), '.') : null);
}
