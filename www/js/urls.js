// Where a narinfo's URL leads. A narinfo is hostile input: its URL becomes a link or a fetch only
// when it is http(s) or relative, and it is fetched without asking only when it stays inside the
// cache (as the verifier requires). An http(s) URL elsewhere (Nix would fetch it) is shown, and
// fetched only from an origin the user allowed; anything else (javascript:, data:, file:, a path
// leaving the cache) is shown as text, never followed. The page's Content-Security-Policy (sent
// by nar-tool serve) holds the same line: connections only to this origin, the cache's, and the
// allowed ones.

const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;
// Stand-in base for a local folder's relative URLs (they are only ever resolved, not fetched).
const LOCAL_BASE = 'http://local.invalid/cache/';

/**
 * Where `url` (a narinfo's URL) leads from the cache at `base` (its URL with a trailing slash, or
 * null for a local folder):
 *   { kind: 'inside', path }            a file of the cache (`path` relative to its root);
 *   { kind: 'elsewhere', href, origin } an http(s) URL outside the cache;
 *   { kind: 'refused', why }            never a link, never fetched.
 */
export function narLocation(base, url) {
  if (typeof url !== 'string' || url === '') return { kind: 'refused', why: 'it is empty' };
  // Control characters and spaces: URL parsing would drop or encode them; Nix's would not.
  if (/[\u0000-\u0020\u007f-\u009f]/.test(url)) return { kind: 'refused', why: 'it has spaces or control characters' };
  const root = new URL(base ?? LOCAL_BASE);
  const absolute = SCHEME.test(url) || url.startsWith('//');
  let target;
  try {
    target = new URL(url, root);
  } catch {
    return { kind: 'refused', why: 'it is not a URL' };
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return { kind: 'refused', why: `${target.protocol} URLs are not followed (only http, https and relative ones)` };
  }
  const inside = target.origin === root.origin && target.pathname.startsWith(root.pathname) && !target.search && !target.hash;
  if (inside && target.pathname.length > root.pathname.length) {
    try {
      return { kind: 'inside', path: decodeURIComponent(target.pathname.slice(root.pathname.length)) };
    } catch {
      return { kind: 'refused', why: 'it has a malformed escape' };
    }
  }
  if (!absolute) return { kind: 'refused', why: 'it leads outside the cache' };
  return { kind: 'elsewhere', href: target.href, origin: target.origin };
}

/** The origins the page may fetch NARs from besides the cache's: `allow=` in its query. */
export function allowedOrigins() {
  const out = new Set();
  for (const v of new URLSearchParams(location.search).getAll('allow')) {
    try {
      const u = new URL(v);
      if (u.protocol === 'http:' || u.protocol === 'https:') out.add(u.origin);
    } catch {
      /* not a URL: ignored, as the server's policy ignores it */
    }
  }
  return out;
}

/**
 * Reloads the page allowing fetches from `origin` too (nar-tool serve widens the page's
 * Content-Security-Policy to the origins in its query), keeping the route.
 */
export function allowOrigin(origin) {
  const u = new URL(location.href);
  if (!u.searchParams.getAll('allow').includes(origin)) u.searchParams.append('allow', origin);
  location.href = u.href;
}
