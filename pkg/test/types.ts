// Type-checked (not run) by `npm test`: `tsc --noEmit -p test/tsconfig.json`. Uses the whole
// API through the package's own name, as a consumer would (the `types` export condition).

import {
  init,
  isInitialised,
  parseNarInfo,
  formatNarInfo,
  fingerprint,
  verifySignatures,
  signNarInfo,
  publicKeyOf,
  parsePublicKey,
  escapeControls,
  nixbase32Encode,
  nixbase32Decode,
  hash,
  parseStorePath,
  parseCacheInfo,
  listNar,
  readNarFile,
  resolveNarPath,
  NarVerifier,
  Decompressor,
  decompress,
  verifyCache,
  exitCode,
  renderReport,
  closure,
  dirSource,
  httpSource,
  type HttpSource,
  narinfoName,
  type NarInfo,
  type Listing,
  type ListingNode,
  type NarSummary,
  type RawSource,
  type Report,
  type Problem,
  type ProblemKind,
  type ReportFormat,
  type VerifyOptions,
  type SignatureCheck,
  type StorePathParts,
  type CacheInfo,
  type Sha256Factory,
} from 'nar-tool';
import { CacheGraph, type ClosureWithMissing, type ClosureTreeNode, type Sizes } from 'nar-tool';

async function main(): Promise<number> {
  await init();
  const ready: boolean = isInitialised();

  const info: NarInfo = parseNarInfo('StorePath: /nix/store/…\n');
  const text: string = formatNarInfo(info);
  const fp: string = fingerprint(info);
  const sigs: SignatureCheck = verifySignatures(info, ['k:AAAA']);
  const valid: string[] = sigs.valid;
  const signed: NarInfo = signNarInfo(info, 'k:AAAA');
  const pub: string = publicKeyOf('k:AAAA');
  const parsed: { name: string; key: string } = parsePublicKey(pub);
  const safe: string = escapeControls(parsed.name);
  const size: number | null = info.fileSize;
  const extra: [string, string][] = signed.extra;

  const b32: string = nixbase32Encode(new Uint8Array(32));
  const bytes: Uint8Array = nixbase32Decode(b32);
  const h: string = hash(bytes, 'sha512', 'sri');
  // @ts-expect-error: not an algorithm
  hash(bytes, 'sha3');
  const sp: StorePathParts = parseStorePath('/gnu/store/x', '/gnu/store');
  const ci: CacheInfo = parseCacheInfo('StoreDir: /nix/store\n');
  const prio: number | null = ci.priority;

  const listing: Listing = listNar(bytes);
  const walk = (n: ListingNode): number => {
    switch (n.type) {
      case 'regular':
        return n.size + n.narOffset + (n.executable ? 1 : 0);
      case 'symlink':
        return n.target.length;
      case 'directory':
        return Object.values(n.entries).reduce((a, c) => a + walk(c), 0);
    }
  };
  walk(listing.root);
  const file: Uint8Array = readNarFile(bytes, 'bin/hello', '/nix/store/…');
  const resolved = resolveNarPath(listing, 'bin/hello', '/nix/store/…');
  const where: ListingNode | string = 'outside' in resolved ? resolved.outside : resolved.node;
  const sha256: Sha256Factory = () => ({ update: (b: Uint8Array) => void b, digest: () => new Uint8Array(32) });
  new NarVerifier(null, sha256).free();
  new NarVerifier('zstd', null).free();

  const v = new NarVerifier('xz');
  v.update(bytes);
  const summary: NarSummary = v.finish();
  const fh: string | undefined = summary.fileHash;
  new NarVerifier().free();

  const d = new Decompressor('zstd');
  const out: Uint8Array[] = [d.update(bytes), d.finish()];
  const flat: Uint8Array = decompress(bytes, 'bzip2');
  const stream: ReadableStream<Uint8Array> = decompress(new Blob([new Uint8Array(8)]).stream(), "xz");

  const source: RawSource = {
    async readFile(path: string) {
      return path === 'nix-cache-info' ? new TextEncoder().encode('StoreDir: /nix/store\n') : null;
    },
    async openFile() {
      return { next: async () => null };
    },
    async listNarinfos() {
      return [];
    },
  };
  const options: VerifyOptions = {
    trustedKeys: [pub],
    checkContents: false,
    storeDir: '/nix/store',
    only: [narinfoName('/nix/store/…')],
    onProgress: ({ done, total, path, bytes }) => console.log(done, total, path, bytes),
    sha256,
  };
  const reports: Report[] = [
    await verifyCache(source, options),
    await verifyCache('./cache'),
    await verifyCache(new URL('https://cache.example.org/'), { roots: ['/nix/store/…'], headers: { authorization: 'Bearer x' } }),
    await verifyCache(dirSource('./cache')),
    await verifyCache(httpSource('https://cache.example.org', { fetch: globalThis.fetch, narinfos: ['abc.narinfo'] })),
  ];
  const http: HttpSource = httpSource('https://cache.example.org/');
  const range: Uint8Array | null = await http.readRange('nar/x.nar', 0, 10);
  const base: string = http.url;
  const first: Problem | undefined = reports[0]?.problems[0];
  const kind: ProblemKind | undefined = first?.kind;
  const paths: string[] = closure([info], [info.storePath]);
  const checked: number = reports[0]!.checked_bytes;
  const compared: [string | undefined, string | undefined] = [first?.expected, first?.found];
  const format: ReportFormat = 'github';
  const stepSummary: ReportFormat = 'github-summary';
  const rendered: string[] = [
    renderReport(reports[0]!, './cache'),
    renderReport(reports[0]!, './cache', format),
    renderReport(reports[0]!, './cache', stepSummary),
    renderReport(reports[0]!, './cache', 'junit', { paths: ['/nix/store/…'], seconds: 1.5, timestamp: 0 }),
  ];
  // @ts-expect-error: no such format
  renderReport(reports[0]!, './cache', 'yaml');
  // @ts-expect-error: no such option
  await verifyCache(source, { trustedKey: 'x' });
  void [resolved, where, range, base, ready, text, fp, valid, size, extra, h, sp, prio, file, fh, out, flat, stream, kind, paths, checked, compared, rendered, safe];
  return exitCode(reports[0]!);
}

function graphs(info: NarInfo): void {
  const graph = new CacheGraph([info]).add([{ storePath: info.storePath, references: [] }]);
  const n: number = graph.size;
  const paths: string[] = graph.closure([info.storePath]);
  const c: ClosureWithMissing = graph.closureWithMissing(['abc-name']);
  const referrers: string[] = graph.referrers(info.storePath);
  const chain: string[] | null = graph.whyDepends(info.storePath, c.missing[0]!);
  const total: number = c.narSize + c.fileSize;
  const each: Sizes[] = graph.closureSizes([info.storePath]);
  const tree: ClosureTreeNode[] = graph.closureTree(info.storePath);
  const added: number = tree[0]!.added.narSize;
  const dominator: string | null = tree[0]!.dominator;
  // @ts-expect-error: roots are an array
  graph.closure(info.storePath);
  void [n, paths, referrers, chain, total, each, added, dominator];
  new CacheGraph().free();
}

void main;
void graphs;

// A cache's lookup index.
import { CacheIndex, type IndexRow, type IndexTotals } from 'nar-tool';
async function indexTypes(): Promise<void> {
  const idx = await CacheIndex.open('https://cache.example.org');
  if (!idx) return;
  const row: IndexRow | null = await idx.lookup('/nix/store/x');
  const n: number = idx.query('hello', 'narSize', true);
  const rows: IndexRow[] = idx.rows(0, n);
  const t: IndexTotals = idx.viewTotals();
  const g: CacheGraph = await idx.closureGraph(rows[0]!.storePath);
  g.free();
  await idx.loadAll({ onProgress: (loaded: number, count: number) => void [loaded, count] });
  void [row, t, idx.complete, idx.shardCount];
  idx.free();
}
void indexTypes;
