// Credentials for a cache that asks for them (nar-tool serve --auth answers 401): a form, and
// the Authorization value kept for this browser session only (sessionStorage, per cache URL;
// gone when the tab closes), never in localStorage.

import { h } from './util.js';

const PREFIX = 'nar-tool-auth:';

/** The Authorization value saved for the cache at `base`, if any. */
export function savedAuthorization(base) {
  try {
    return sessionStorage.getItem(PREFIX + base);
  } catch {
    return null;
  }
}

function save(base, value) {
  try {
    if (value === null) sessionStorage.removeItem(PREFIX + base);
    else sessionStorage.setItem(PREFIX + base, value);
  } catch {
    // Storage refused (a private window's quota): the credentials last as long as the page.
  }
}

/** `Basic base64(user:secret)`, the UTF-8 bytes encoded. */
function basic(user, secret) {
  const bytes = new TextEncoder().encode(`${user}:${secret}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/** Forgets what was saved for `base` (wrong credentials). */
export function forgetAuthorization(base) {
  save(base, null);
}

/** The login form for the cache at `base`; `retry()` reopens it with what was entered. */
export function loginView(base, retry) {
  const user = h('input', { type: 'text', id: 'login-user', autocomplete: 'username', required: true, placeholder: 'User', 'aria-label': 'User' });
  const secret = h('input', { type: 'password', id: 'login-secret', autocomplete: 'current-password', required: true, placeholder: 'Secret', 'aria-label': 'Secret' });
  const submit = (e) => {
    e.preventDefault();
    save(base, basic(user.value, secret.value));
    retry();
  };
  return h('section', { class: 'card', id: 'login' },
    h('h2', null, 'This cache asks for credentials'),
    h('p', { class: 'muted' }, `${base}: kept for this browser session only.`),
    h('form', { onsubmit: submit }, user, secret, h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in')));
}
