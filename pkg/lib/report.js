// Renderings of a verify report, as the CLI prints them: the text `nar-tool verify` prints, its
// JSON document, GitHub Actions annotations and a JUnit XML report. Pure functions (no I/O).

/** Kinds that are only warnings (they do not fail the report). */
export const WARNING_KINDS = new Set(['orphan-nar']);

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/**
 * Bytes as `nar-tool` prints them: "512 B", "1.3 MiB" — one decimal, rounded half to even on the
 * exact value as Rust's `{:.1}` does (JS's toFixed rounds ties away from zero).
 */
export function humanBytes(n) {
  // Rust converts the u64 to f64 first; a JS number already is one.
  let exact = BigInt(Math.round(Number(n)));
  let u = 0;
  let divisor = 1n;
  while (exact >= divisor * 1024n && u < UNITS.length - 1) {
    divisor *= 1024n;
    u += 1;
  }
  if (u === 0) return `${exact} B`;
  const scaled = exact * 10n;
  let tenths = scaled / divisor;
  const rest = scaled % divisor;
  if (rest * 2n > divisor || (rest * 2n === divisor && tenths % 2n === 1n)) tenths += 1n;
  return `${tenths / 10n}.${tenths % 10n} ${UNITS[u]}`;
}

function counts(report) {
  const failures = report.problems.filter((p) => !WARNING_KINDS.has(p.kind)).length;
  return { failures, warnings: report.problems.length - failures };
}

/** The last line `nar-tool verify` prints. */
export function summaryLine(cache, report) {
  const { failures, warnings } = counts(report);
  return `${cache}: ${report.paths} paths, ${humanBytes(report.checked_bytes)} read, ${report.ok ? 'OK' : 'FAILED'}: ${failures} problems, ${warnings} warnings`;
}

/** One line per problem, then the summary: exactly `nar-tool verify`'s output. */
export function textReport(cache, report) {
  let out = '';
  for (const p of report.problems) out += `${p.kind} ${p.path}: ${p.message}\n`;
  return `${out}${summaryLine(cache, report)}\n`;
}

/** The report as `nar-tool verify --json` prints it (serde_json's pretty form, same key order). */
export function jsonReport(report) {
  const doc = {
    ok: report.ok,
    paths: report.paths,
    checked_bytes: report.checked_bytes,
    problems: report.problems.map((p) => ({ kind: p.kind, path: p.path, message: p.message })),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

// GitHub's workflow-command escaping: data escapes % CR LF; property values also : and ,.
function ghData(s) {
  return String(s).replaceAll('%', '%25').replaceAll('\r', '%0D').replaceAll('\n', '%0A');
}
function ghProperty(s) {
  return ghData(s).replaceAll(':', '%3A').replaceAll(',', '%2C');
}

/** One `::error title=<kind>,file=<path>::<message>` line per problem (`::warning` for warnings). */
export function githubAnnotations(report) {
  let out = '';
  for (const p of report.problems) {
    const level = WARNING_KINDS.has(p.kind) ? 'warning' : 'error';
    out += `::${level} title=${ghProperty(p.kind)},file=${ghProperty(p.path)}::${ghData(p.message)}\n`;
  }
  return out;
}

// XML 1.0 cannot hold most control characters, even as references: they are shown as \u{..}.
function xmlText(s) {
  return String(s)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
      (c) => `\\u{${c.codePointAt(0).toString(16)}}`)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('\r', '&#13;'); // a raw CR would be read back as LF
}
function xmlAttr(s) {
  return xmlText(s).replaceAll('"', '&quot;').replaceAll("'", '&apos;').replaceAll('\n', '&#10;').replaceAll('\t', '&#9;');
}

/**
 * A JUnit XML report: one testcase for the cache itself (nix-cache-info, listings, orphan NARs)
 * and one per store path checked (`paths`: names in the order to list them; a narinfo that could
 * not be parsed is named by its file name, as in the report). A problem that is a failed check
 * (`check-failed`) is an <error>, the others a <failure>; warnings go to <system-out>.
 */
export function junitXml({ cache, report, paths, seconds = 0, timestamp = new Date() }) {
  const byPath = new Map();
  const names = [...new Set(paths)];
  for (const n of names) byPath.set(n, []);
  const cacheProblems = [];
  for (const p of report.problems) (byPath.get(p.path) ?? cacheProblems).push(p);
  const cases = [{ name: cache, problems: cacheProblems }, ...names.map((n) => ({ name: n, problems: byPath.get(n) }))];

  let failures = 0;
  let errors = 0;
  const body = [];
  for (const c of cases) {
    const bad = c.problems.filter((p) => !WARNING_KINDS.has(p.kind));
    const warnings = c.problems.filter((p) => WARNING_KINDS.has(p.kind));
    const lines = (ps) => ps.map((p) => `${p.kind} ${p.path}: ${p.message}`).join('\n');
    let inner = '';
    if (bad.length > 0) {
      const first = bad.find((p) => p.kind !== 'check-failed');
      const tag = first ? 'failure' : 'error';
      const lead = first ?? bad[0];
      if (first) failures += 1;
      else errors += 1;
      inner += `      <${tag} type="${xmlAttr(lead.kind)}" message="${xmlAttr(lead.message)}">${xmlText(lines(bad))}</${tag}>\n`;
    }
    if (warnings.length > 0) inner += `      <system-out>${xmlText(lines(warnings))}</system-out>\n`;
    const open = `    <testcase classname="${xmlAttr(cache)}" name="${xmlAttr(c.name)}"`;
    body.push(inner ? `${open}>\n${inner}    </testcase>\n` : `${open}/>\n`);
  }
  const time = seconds.toFixed(3);
  const tests = cases.length;
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<testsuites name="nar-cache-verify" tests="${tests}" failures="${failures}" errors="${errors}" time="${time}">\n` +
    `  <testsuite name="${xmlAttr(cache)}" tests="${tests}" failures="${failures}" errors="${errors}" skipped="0" time="${time}" timestamp="${timestamp.toISOString().replace(/\.\d+Z$/, '')}">\n` +
    '    <properties>\n' +
    `      <property name="ok" value="${report.ok}"/>\n` +
    `      <property name="paths" value="${report.paths}"/>\n` +
    `      <property name="checked_bytes" value="${report.checked_bytes}"/>\n` +
    '    </properties>\n' +
    body.join('') +
    '  </testsuite>\n' +
    '</testsuites>\n'
  );
}
