// Options objects are checked: a key the function does not know is an error naming the one that
// was probably meant, never silently ignored (`{ trustedKey: … }` would verify without checking a
// single signature).

/** The edit distance between two strings (insertions, deletions, substitutions, swaps). */
function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known name closest to `name`, if one is close enough to be what was meant. */
export function closest(name, known) {
  const lower = name.toLowerCase().replace(/[-_]/g, '');
  let best = null;
  let bestScore = Infinity;
  for (const k of known) {
    const kl = k.toLowerCase();
    // Same letters in another case or with dashes; else a few edits, relative to the length.
    const score = kl === lower ? 0 : distance(lower, kl);
    if (score < bestScore) {
      best = k;
      bestScore = score;
    }
  }
  return bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/**
 * Throws a TypeError for the first key of `options` not in `known`, naming the closest known
 * one. `what` names the function (`verifyCache`). Anything but a plain object (or undefined/null)
 * is refused too.
 */
export function checkOptions(what, options, known) {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`nar-tool: ${what}: the options must be an object, got ${Array.isArray(options) ? 'an array' : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const meant = closest(key, known);
    throw new TypeError(
      `nar-tool: ${what}: unknown option ${JSON.stringify(key)}` +
        (meant ? ` (did you mean ${JSON.stringify(meant)}?)` : '') +
        `; the options are ${known.join(', ')}`,
    );
  }
}
