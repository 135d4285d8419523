// Types of the `nar-tool` package (both entries: Node's index.js and browser.js).

// ---- Formats

/** A parsed narinfo (`<hashpart>.narinfo`). Sizes are numbers (exact below 2^53). */
export interface NarInfo {
  /** `/nix/store/<hash>-<name>` */
  storePath: string;
  /** Relative to the cache root: `nar/<nixbase32 FileHash>.nar.xz` */
  url: string;
  compression: string;
  /** `sha256:<nixbase32>` of the compressed file */
  fileHash: string | null;
  fileSize: number | null;
  /** `sha256:<nixbase32>` of the NAR */
  narHash: string;
  narSize: number;
  /** Base names `<hash>-<name>`, sorted */
  references: string[];
  /** Base name of the deriver */
  deriver: string | null;
  system: string | null;
  /** `<key name>:<base64>` lines */
  sigs: string[];
  /** e.g. `fixed:r:sha256:<nixbase32>` */
  ca: string | null;
  /** Unknown keys, kept in order */
  extra: [string, string][];
}

export interface SignatureCheck {
  /** Names of trusted keys with a valid signature */
  valid: string[];
  /** Names of trusted keys whose signature does not verify */
  invalid: string[];
  /** Key names of signatures by keys not trusted */
  unknown: string[];
  /** Sig lines that cannot be parsed */
  malformed: string[];
}

export interface StorePathParts {
  storeDir: string;
  hashPart: string;
  name: string;
  /** What follows the name's first `-<digit>`, or "" */
  version: string;
  baseName: string;
  path: string;
}

export interface CacheInfo {
  storeDir: string;
  wantMassQuery: boolean;
  priority: number | null;
}

export type HashAlgo = 'md5' | 'sha1' | 'sha256' | 'sha512';
export type HashEncoding = 'nixbase32' | 'base16' | 'base64' | 'sri';
export type Compression = 'none' | 'xz' | 'zstd' | 'bzip2';

export function parseNarInfo(text: string): NarInfo;
/** The narinfo text, in Nix's line order. */
export function formatNarInfo(info: NarInfo): string;
/** `1;/nix/store/…;sha256:…;<NarSize>;/nix/store/a,/nix/store/b` */
export function fingerprint(info: NarInfo): string;
export function verifySignatures(info: NarInfo, trustedKeys: string[]): SignatureCheck;
/** A copy of `info` with a signature by `secretKey` (`name:base64`) added. */
export function signNarInfo(info: NarInfo, secretKey: string): NarInfo;
export function publicKeyOf(secretKey: string): string;
/** A public key `name:base64` as Nix checks one; throws nar-tool's message for one that is not. */
export function parsePublicKey(text: string): { name: string; key: string };
/** Text from a cache safe to print: control characters (ESC, CR, LF, C1, bidi…) escaped. */
export function escapeControls(text: string): string;
export function nixbase32Encode(bytes: Uint8Array): string;
export function nixbase32Decode(text: string): Uint8Array;
/** Default encoding nixbase32, printed as `<algo>:<hash>`; `sri` is `<algo>-<base64>`. */
export function hash(bytes: Uint8Array, algo: HashAlgo, encoding?: HashEncoding): string;
export function parseStorePath(path: string, storeDir?: string): StorePathParts;
export function parseCacheInfo(text: string): CacheInfo;

// ---- NARs

export interface RegularNode {
  type: 'regular';
  size: number;
  executable?: boolean;
  /** Offset of the contents in the uncompressed NAR */
  narOffset: number;
}
export interface SymlinkNode {
  type: 'symlink';
  target: string;
}
export interface DirectoryNode {
  type: 'directory';
  entries: { [name: string]: ListingNode };
}
export type ListingNode = RegularNode | SymlinkNode | DirectoryNode;

/** The `.ls` document Nix writes. */
export interface Listing {
  version: 1;
  root: ListingNode;
}

export function listNar(nar: Uint8Array): Listing;
/**
 * A file inside a NAR (`bin/hello`, or "" for a root file); symlinks inside are followed (absolute
 * ones into `storePath`, the NAR's own store path, count as inside).
 */
export function readNarFile(nar: Uint8Array, path: string, storePath?: string): Uint8Array;
/**
 * Follows `path` through a listing's symlinks, as readNarFile does: the path reached and its node,
 * or, for a symlink leading out of the NAR, the absolute path it leads to (`..` past the root and
 * relative links of a NAR that is a symlink need `storePath` for that; without it they throw).
 */
export function resolveNarPath(
  listing: Listing,
  path: string,
  storePath?: string,
): { path: string; node: ListingNode } | { outside: string };

/**
 * A factory of SHA-256 hashers the verifier uses instead of its own (portable, slower) code.
 * `update` gets a view of wasm memory: consume it at once, do not keep it.
 */
export type Sha256Factory = () => { update(bytes: Uint8Array): void; digest(): Uint8Array };

export interface NarSummary {
  narHash: string;
  narSize: number;
  listing: Listing;
  /** Only when the verifier was given a compression */
  fileHash?: string;
  fileSize?: number;
}

/** Streams a NAR (compressed when given a compression) through in constant memory. */
export class NarVerifier {
  /** `sha256`: default in Node, node:crypto's (OpenSSL); null: the wasm's own. `memoryLimit`: as for Decompressor. */
  constructor(compression?: Compression | string | null, sha256?: Sha256Factory | null, memoryLimit?: number);
  /** Throws at the first malformed byte. */
  update(chunk: Uint8Array): void;
  /** Ends the stream (and frees the verifier). */
  finish(): NarSummary;
  free(): void;
}

export class Decompressor {
  /**
   * `memoryLimit`: the most bytes the decoder may need (a zstd window, an xz dictionary); more is
   * refused before anything is allocated. Default 2 GiB + 1 MiB: what Nix accepts (zstd up to
   * `--long=31`, xz dictionaries up to 1.5 GiB).
   */
  constructor(compression: Compression | string, memoryLimit?: number);
  update(chunk: Uint8Array): Uint8Array;
  finish(): Uint8Array;
  free(): void;
}

/** Chunks of bytes: a web ReadableStream, or an (async) iterable such as a Node Readable. */
export type ByteStream =
  | ReadableStream<Uint8Array | ArrayBufferView | ArrayBuffer>
  | AsyncIterable<Uint8Array | ArrayBufferView | ArrayBuffer | string>
  | Iterable<Uint8Array>;

/** Bytes in, bytes out. */
export function decompress(input: Uint8Array | ArrayBuffer, compression: Compression | string): Uint8Array;
/** A stream in, a stream of decompressed chunks out (constant memory). */
export function decompress(input: ByteStream, compression: Compression | string): ReadableStream<Uint8Array>;

// ---- Verifying a cache

export type ProblemKind =
  | 'bad-cache-info'
  | 'malformed-narinfo'
  | 'hash-part-mismatch'
  | 'url-outside-cache'
  | 'missing-nar'
  | 'file-size-mismatch'
  | 'file-hash-mismatch'
  | 'malformed-nar'
  | 'nar-size-mismatch'
  | 'nar-hash-mismatch'
  | 'missing-reference'
  | 'bad-signature'
  | 'untrusted'
  | 'orphan-nar'
  | 'check-failed'
  | 'reference-policy';

export interface Problem {
  kind: ProblemKind;
  /** A store path, a narinfo file name, `nix-cache-info`, `nar/<file>` or `.` */
  path: string;
  message: string;
  /**
   * Present when the check compared two values (sizes, hashes, the narinfo's file name, the
   * store directory…): the value the cache claims, e.g. the narinfo's FileSize.
   */
  expected?: string;
  /** …and the value found (absent when not known: a NAR longer than NarSize). */
  found?: string;
}

/** What `nar-tool verify --json` prints. */
export interface Report {
  ok: boolean;
  paths: number;
  checked_bytes: number;
  /** Sorted by path, then kind; at most maxProblems of them */
  problems: Problem[];
  /** How many more of each kind were found and not listed (absent when none were). */
  omitted_problems?: Partial<Record<ProblemKind, number>>;
}

/** The stream openFile() gives: chunks, then null at the end. */
export interface RawFileStream {
  next(): Promise<Uint8Array | null>;
  /** Optional: the file's size, known when it was opened (saves a fileSize call). */
  size?: number;
  /** Optional: stop early and release the file. */
  close?(): Promise<void>;
}

/** What the verifier reads a cache through: paths relative to the cache root. */
export interface RawSource {
  /** A whole small file (nix-cache-info, a narinfo); null when absent. */
  readFile(path: string): Promise<Uint8Array | null>;
  /** A file in chunks; null when absent. */
  openFile(path: string): Promise<RawFileStream | null>;
  /** Optional: a file's size (else counted while reading); null when absent. */
  fileSize?(path: string): Promise<number | null>;
  /** `<hashpart>.narinfo` names at the root. */
  listNarinfos(): Promise<string[]>;
  /** Optional: `nar/<name>` paths, for the orphan check (skipped without it). */
  listNarFiles?(): Promise<string[]>;
}

export interface VerifyProgress {
  done: number;
  total: number;
  path: string;
  bytes: number;
}

export interface VerifyOptions {
  /** `name:base64` public keys; every path then needs a valid signature by one. */
  trustedKeys?: string[];
  /** Read and check every NAR (default true); false: narinfos, sizes, signatures, references. */
  checkContents?: boolean;
  /** The store directory the cache must be for (default /nix/store). */
  storeDir?: string;
  /** Narinfo file names to check (a closure); default all. */
  only?: string[];
  onProgress?: (progress: VerifyProgress) => void;
  /** The SHA-256 to hash with: default in Node, node:crypto's (several times faster); null: the wasm's own. */
  sha256?: Sha256Factory | null;
  /** The most bytes a NAR's decoder may need (see Decompressor); default 2 GiB + 1 MiB. */
  memoryLimit?: number;
  /**
   * Paths checked at once (default 8): their reads in flight while the one thread checks
   * another; as many decoders alive. The report is the same whatever the number.
   */
  jobs?: number;
  /**
   * Node, a cache on disk (a path, a `file:` URL or a dirSource) hashed with the default
   * SHA-256: worker threads sharing its paths, each running the verifier (default: the CPUs, at
   * most 4; 1 to 64). Shared from 256 paths on. The report is the same whatever the number.
   */
  threads?: number;
  /**
   * The paths shared with helpers the caller runs (other workers, each calling
   * checkSharedPaths with the names begin() gives): see VerifyShare. Default: none (or, in Node,
   * the package's own threads).
   */
  share?: VerifyShare;
  /**
   * The most problems the report lists (default 100 000): the first in its order; the others
   * are counted by kind in `omitted_problems`, so memory stays bounded however many there are.
   * 0: every one.
   */
  maxProblems?: number;
}

export interface HttpSourceOptions {
  /** Default: globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /** Sent with every request (e.g. authorization). */
  headers?: Record<string, string>;
  /** The narinfos to check: file names, hash parts, base names or store paths. */
  narinfos?: string[];
  /** Check the closure of these store paths (followed through References). */
  roots?: string[];
}

/** A RawSource over a cache directory (Node only). Throws if the directory does not exist. */
export function dirSource(dir: string | URL): RawSource & { root: string };
/** A RawSource over an http(s) binary cache (see HttpSourceOptions for how narinfos are found). */
export function httpSource(baseUrl: string | URL, options?: HttpSourceOptions): HttpSource;
/** What httpSource gives: a RawSource, its base URL, and byte ranges of a file. */
export interface HttpSource extends RawSource {
  /** The cache's base URL, with a trailing slash. */
  url: string;
  /** Bytes [start, end) of a file (a Range request; a server ignoring it still works); null: absent. */
  readRange(path: string, start: number, end: number): Promise<Uint8Array | null>;
  /**
   * Rejects, saying why (`cannot reach <url>: connection refused (ECONNREFUSED)`), when the cache
   * gives no response at all; verifyCache calls it first.
   */
  reach(): Promise<void>;
}

/**
 * Verifies a cache: a RawSource, a directory path (Node) or an http(s) URL. The report is the one
 * `nar-tool verify --json` gives for the same files.
 */
export function verifyCache(
  target: RawSource | string | URL,
  options?: VerifyOptions & Pick<HttpSourceOptions, 'fetch' | 'headers' | 'narinfos' | 'roots'>,
): Promise<Report>;
/**
 * verifyCache with the report kept in wasm memory, for reports that may hold millions of
 * problems: the verdict and counts at once, the renderings piece by piece.
 */
export function verifyCacheReport(
  target: RawSource | string | URL,
  options?: VerifyOptions & Pick<HttpSourceOptions, 'fetch' | 'headers' | 'narinfos' | 'roots'>,
): Promise<VerifyReport>;
export interface VerifyReport {
  readonly ok: boolean;
  readonly paths: number;
  readonly checkedBytes: number;
  /** Problems and warnings found, listed or not. */
  readonly problemCount: number;
  /** Problems and warnings found beyond maxProblems, counted and not listed. */
  readonly omittedCount: number;
  /** The exit code nar-tool verify gives. */
  exitCode(): number;
  /** The whole report, as verifyCache gives it. */
  toJSON(): Report;
  /** A rendering in pieces of about 64 KiB; joined, what renderReport gives. */
  render(cache: string, format?: ReportFormat, junit?: JunitOptions): Iterable<string>;
  /** Releases its wasm memory. */
  free(): void;
}
/** 0 when ok (warnings included), else the sum of 1 (corrupt/missing), 2 (signatures), 4 (check failed). */
export function exitCode(report: Report): number;

/**
 * How a report is rendered: `text` is what `nar-tool verify` prints (a line per problem, then the
 * summary line), `summary` that summary line alone, `json` the `--json` document, `github` GitHub
 * Actions annotations (10 per level at most, the rest as lines) then the summary line,
 * `github-summary` Markdown for `$GITHUB_STEP_SUMMARY`, `junit` a JUnit XML report. Every
 * rendering ends with a newline; all but `json` escape control characters.
 */
export type ReportFormat = 'text' | 'summary' | 'json' | 'github' | 'github-summary' | 'junit';

export interface JunitOptions {
  /** The store paths checked, one testcase each (a malformed narinfo by its file name). */
  paths?: string[];
  /** How long the verification took. */
  seconds?: number;
  /** When it ran, in seconds since the Unix epoch (default: now). */
  timestamp?: number;
}

/**
 * A report rendered exactly as nar-tool renders it (the same code); `cache` is the cache as the
 * user named it, for the summary line.
 */
export function renderReport(report: Report, cache: string, format?: ReportFormat, junit?: JunitOptions): string;
/** Full store paths in the closure of `roots` among `infos`, sorted; missing references skipped. */
export function closure(infos: NarInfo[], roots: string[]): string[];

/** `<hashpart>.narinfo` for a narinfo name, hash part, base name or store path. */
export function narinfoName(item: string): string;

// ---- The reference graph

/** A closure, and the paths it reaches that have no narinfo. */
export interface ClosureWithMissing {
  /** Store paths with a narinfo, roots included, sorted. */
  paths: string[];
  /** Roots and references without a narinfo, sorted. */
  missing: string[];
  /** The sum of the paths' NarSizes. */
  narSize: number;
  /** The sum of the paths' FileSizes (those without one count as 0). */
  fileSize: number;
}

/** Sizes of paths: NAR bytes, and bytes of their files in the cache. */
export interface Sizes {
  narSize: number;
  fileSize: number;
}

/** One path of a closure as `closureTree` gives it. */
export interface ClosureTreeNode extends Sizes {
  path: string;
  /** What the path brings into the closure alone: its sizes and those of the paths it dominates. */
  added: Sizes;
  /** The nearest path every chain of references from the root to this one goes through; null for the root. */
  dominator: string | null;
}

/** One path of a lookup index. */
export interface IndexRow {
  /** Its position in the index (entries are sorted by hash part). */
  id: number;
  hashPart: string;
  baseName: string;
  storePath: string;
  /** The name after the hash part, and it split like Nix's DrvName. */
  name: string;
  pname: string;
  version: string;
  /** Whether the cache has its narinfo (else it is only referenced). */
  present: boolean;
  narSize: number | null;
  fileSize: number | null;
  refCount: number;
}

export interface IndexTotals {
  count: number;
  narSize: number;
  fileSize: number;
}

export type IndexSortKey = 'name' | 'version' | 'hash' | 'narSize' | 'fileSize' | 'refs';

/**
 * A cache's lookup index (nar-tool-index/), read a shard at a time through a source; each shard
 * fetched once, checked against the manifest. Call free() when done.
 */
export class CacheIndex {
  /** The index of a cache (a source, an http(s) URL, or in Node a directory); null if it has none. */
  static open(target: RawSource | string | URL, options?: HttpSourceOptions): Promise<CacheIndex | null>;
  constructor(manifest: Uint8Array, source: Pick<RawSource, 'readFile'>);
  readonly storeDir: string;
  /** Paths with a narinfo. */
  readonly paths: number;
  /** Entries: the paths and the references without a narinfo. */
  readonly entries: number;
  readonly shardCount: number;
  readonly loadedShards: number;
  /** Whether every shard is loaded. */
  readonly complete: boolean;
  load(shards: number[], options?: { concurrency?: number; onProgress?: (loaded: number, count: number) => void }): Promise<void>;
  loadAll(options?: { concurrency?: number; onProgress?: (loaded: number, count: number) => void }): Promise<void>;
  /** A hash part, store path or base name: its entry, or null. */
  lookup(path: string): Promise<IndexRow | null>;
  /** lookup() without loading: undefined when its shard is not loaded yet. */
  lookupLoaded(hashPart: string): IndexRow | null | undefined;
  /** The loaded paths with a narinfo: how many, sorted and filtered (their base names contain `search`, any case). */
  query(search: string, sortKey?: IndexSortKey, descending?: boolean): number;
  /** A page of the last query. */
  rows(start: number, count: number): IndexRow[];
  viewTotals(): IndexTotals;
  /** Of every loaded path with a narinfo. */
  totals(): IndexTotals;
  references(path: string): Promise<string[]>;
  /** references() once its shards are loaded; throws else. */
  referencesLoaded(path: string): string[];
  /** The reference graph of the closure of `path`, with sizes. */
  closureGraph(path: string): Promise<CacheGraph>;
  /** Reads every shard first. */
  referrers(path: string, options?: { concurrency?: number }): Promise<string[]>;
  /** `<hash part>.narinfo` of every path with a narinfo, sorted; reads every shard first. */
  narinfoNames(options?: { concurrency?: number }): Promise<string[]>;
  narinfoNamesLoaded(): string[];
  free(): void;
}

/** What the graph reads of a narinfo. */
export type GraphEntry = Pick<NarInfo, 'storePath' | 'references'> & Partial<Pick<NarInfo, 'narSize' | 'fileSize'>>;

/**
 * The references among narinfos, built once (and grown with add()), computed by the wasm core.
 * Paths in: store paths or base names; out: store paths (in the store directory of the first
 * narinfo added). Call free() when done.
 */
export class CacheGraph {
  /** Only `storePath`, `references`, `narSize` and `fileSize` of each narinfo are read. */
  constructor(infos?: GraphEntry[]);
  /** The number of store paths with a narinfo. */
  readonly size: number;
  /** Adds narinfos; a later one for a store path replaces an earlier one. */
  add(infos: GraphEntry[]): this;
  /** Store paths with a narinfo in the closure of `roots`, roots included, sorted; the others skipped. */
  closure(roots: string[]): string[];
  closureWithMissing(roots: string[]): ClosureWithMissing;
  /** Each path's own closure size, in the order of `paths`. */
  closureSizes(paths: string[]): Sizes[];
  /**
   * The closure of `root` (paths with a narinfo), root first and each path after its dominator,
   * with what each adds (nix-tree's added size); empty when `root` has no narinfo.
   */
  closureTree(root: string): ClosureTreeNode[];
  /** Store paths whose narinfos reference `path` directly (itself too if it refers to itself), sorted. */
  referrers(path: string): string[];
  /**
   * Why `from` depends on `to`, as `nix why-depends`: the shortest chain of references from `from`
   * to `to`, both included (`[from]` when they are the same); of several, the first in store path
   * order. null when `to` is not in the closure of `from`.
   */
  whyDepends(from: string, to: string): string[] | null;
  free(): void;
}

// ---- Initialisation

/**
 * Initialises the WebAssembly module. Node: done on import, resolves at once. Browsers: fetches
 * `wasm/nar_tool_bg.wasm` beside the module (or `input`); call it once before the synchronous
 * functions (verifyCache and decompress over a stream call it themselves).
 */
export function init(
  input?: string | URL | Request | Response | BufferSource | WebAssembly.Module | Promise<Response>,
): Promise<void>;
export function isInitialised(): boolean;

/**
 * How a verification's paths are shared between a leader (verifyCache) and helpers
 * (checkSharedPaths), each its own wasm instance. Every side claims paths by index into the
 * leader's listing; a helper sends the checks of its paths as text; the leader checks itself any
 * path whose check never came, so the report does not depend on the helpers.
 */
export interface VerifyShare {
  /** The next paths to check: [start, end) into the names, or undefined when none are left. */
  claim(): [number, number] | undefined;
  /** Leader: the names about to be checked (the helpers' work list). */
  begin?(names: string[]): void;
  /** Leader: the helpers' texts that have arrived, without waiting. */
  arrived?(): string[] | undefined;
  /** Leader: the helpers' texts that came since, once every helper is done. */
  rest?(): Promise<string[]>;
  /** Helper: hands a text of checks to the leader. */
  send?(text: string): void;
}

/** A helper's part of a shared verification (see VerifyShare). */
export function checkSharedPaths(target: string | URL | RawSource, options: VerifyOptions & { share: VerifyShare }, names: string[]): Promise<void>;
