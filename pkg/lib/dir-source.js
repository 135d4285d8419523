// A RawSource over a cache directory (Node only), behaving as nar-tool's native directory
// backend (src/host/dir_storage.rs) does, so that the wasm verifier reports exactly what
// `nar-tool verify` reports:
// - files are opened beneath the directory as openat2(RESOLVE_BENEATH) opens them: a symlink is
//   followed only while it stays inside (an absolute one, or `..` above the root, is refused);
// - only regular files are read, decided on the opened handle (non-blocking, so a FIFO is an
//   error at once, not a hang);
// - listings keep what the storage layer's one rule keeps (the wasm's `listedNames`): never a
//   directory, a symlink only when it leads to a regular file inside;
// - errors carry the native messages: "<dir>/<rel>: <Rust's io::Error text>", "<dir>/<rel> is
//   not a regular file (found a directory); refusing to read it", …, with <dir> as given.

import { closeSync, constants, fstatSync, lstatSync, openSync, read, readSync, realpathSync } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listedNames } from './api.js';
import { SMALL_FILE_CAP } from './http-source.js';

export const CHUNK_SIZE = 1024 * 1024;

// glibc's strerror texts, which Rust's io::Error prints ("<text> (os error <n>)").
const STRERROR = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  EMFILE: 'Too many open files',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ENAMETOOLONG: 'File name too long',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  ESTALE: 'Stale file handle',
  ETIMEDOUT: 'Connection timed out',
  ECONNRESET: 'Connection reset by peer',
};

/** An fs error as Rust's io::Error displays it (where the platform's errno is known). */
export function ioError(e) {
  if (e && typeof e.code === 'string' && typeof e.errno === 'number' && STRERROR[e.code]) {
    const err = new Error(`${STRERROR[e.code]} (os error ${-e.errno})`);
    err.code = e.code;
    return err;
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Rust's `{:?}` of a string (for the messages that quote a path). */
export function rustDebug(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c === 0) out += '\\0';
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * An error with Rust's io::ErrorKind where a rule depends on it (listing skips a symlink whose
 * target is refused with PermissionDenied or InvalidData).
 */
function kindError(message, kind) {
  return Object.assign(new Error(message), { kind });
}

/** An fs error about `what`, as the native backend words it (`<what>: <io::Error text>`). */
function osError(e, what) {
  const err = ioError(e);
  const kind = err.code === 'EACCES' || err.code === 'EPERM' ? 'PermissionDenied' : undefined;
  return Object.assign(new Error(`${what}: ${err.message}`), { code: err.code, kind });
}

const notFollowed = (what) => kindError(`${what} is a symlink or leads outside the cache; not followed`, 'PermissionDenied');

/** An error for an errno code (`ENOTDIR`), as fs gives them. */
function errnoError(code) {
  return Object.assign(new Error(code), { code, errno: -osConstants.errno[code] });
}

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
const OPEN_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

/** Reads of at most this many bytes are synchronous (microseconds from the page cache); larger ones go to Node's threads, in flight while the wasm works. */
const SYNC_READ = 64 * 1024;

/** Reads up to `n` bytes at the file's position into `buf`: the number read. */
function readChunk(fd, buf, n) {
  if (n <= SYNC_READ) return readSync(fd, buf, 0, n, null);
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, n, null, (e, bytesRead) => (e ? reject(e) : resolve(bytesRead)));
  });
}

function closeQuietly(fd) {
  try {
    closeSync(fd);
  } catch {
    // Nothing more to release.
  }
}

/** The most symlinks followed in one lookup (Linux's MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

function fileTypeName(st) {
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'an unknown file type';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A listed name as Rust has it, or null when it is not UTF-8 (never listed natively). */
function utf8Name(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * A RawSource over the cache directory `dir`. The directory is opened when the source is made
 * (it must be a directory: the error otherwise is the native one, e.g. "<dir>: No such file or
 * directory (os error 2)").
 */
export function dirSource(dir) {
  const given = dir instanceof URL ? fileURLToPath(dir) : String(dir);
  let root;
  try {
    closeSync(openSync(given, O_RDONLY | O_DIRECTORY));
    root = realpathSync(given);
  } catch (e) {
    throw osError(e, given);
  }
  const display = (rel) => `${given}/${rel}`;

  /**
   * Resolves `rel` beneath the root as openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) does:
   * `{ real }`, the real path, or `{ errno }`, the error the kernel would give.
   */
  async function beneath(rel) {
    const todo = rel.split('/').reverse();
    const done = [];
    let links = 0;
    while (todo.length > 0) {
      const c = todo.pop();
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (done.length === 0) return { errno: 'EXDEV' };
        done.pop();
        continue;
      }
      const p = path.join(root, ...done, c);
      let st;
      try {
        st = await lstat(p);
      } catch (e) {
        if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return { errno: e.code };
        return { errno: e.code, error: e };
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) return { errno: 'ELOOP' };
        const target = await readlink(p);
        if (target === '') return { errno: 'ENOENT' };
        if (target.startsWith('/')) return { errno: 'EXDEV' };
        todo.push(...target.split('/').reverse());
        continue;
      }
      if (todo.length > 0 && !st.isDirectory()) return { errno: 'ENOTDIR' };
      done.push(c);
    }
    return { real: path.join(root, ...done) };
  }

  /** Folders of the cache ("nar") found to be real directories, not symlinks: folder → boolean. */
  const plainFolders = new Map();
  function plainFolder(folder) {
    if (!plainFolders.has(folder)) {
      let plain = false;
      try {
        plain = lstatSync(path.join(root, folder)).isDirectory();
      } catch {
        // The walk says why.
      }
      plainFolders.set(folder, plain);
    }
    return plainFolders.get(folder);
  }

  /** `fstat`'s size if `fd` is a regular file, else closes it and gives undefined. */
  function regularSize(fd) {
    try {
      const st = fstatSync(fd);
      if (st.isFile()) return st.size;
    } catch {
      // The slow path says why.
    }
    closeQuietly(fd);
    return undefined;
  }

  /**
   * The common case in two system calls: a regular file directly in the root or in a folder of
   * it that is a real directory, opened without following a symlink. `{ fd, size }`, null when
   * absent, or undefined for anything else (a symlink, an error), which `beneath` then resolves
   * and words exactly. (Like the walk, this checks the folder before the file is opened, not
   * atomically as openat2 does; a folder is checked once per source.)
   */
  function openDirect(rel) {
    const slash = rel.indexOf('/');
    if (slash >= 0 && (rel.indexOf('/', slash + 1) >= 0 || !plainFolder(rel.slice(0, slash)))) return undefined;
    let fd;
    try {
      // `rel` has no empty or `..` component (openRegular checked): joined as it is.
      fd = openSync(`${root}/${rel}`, OPEN_FLAGS);
    } catch (e) {
      return e.code === 'ENOENT' ? null : undefined;
    }
    const size = regularSize(fd);
    return size === undefined ? undefined : { fd, size };
  }

  /**
   * Opens a regular file: `{ fd, size }`, or null when absent; an error naming what is there if
   * it is not a regular file or leads outside (native: `Beneath::open_regular`). At once (no
   * promise) in the common case: a file in the page cache opens in microseconds, and a promise
   * of Node's fs costs far more than that (it was most of the time per path on caches of small
   * paths); a promise when the path must be walked (a symlink, an error to word).
   */
  function openRegular(rel) {
    if (rel === '' || rel.startsWith('/') || rel.includes('\0') || rel.split('/').some((c) => c === '..' || c === '')) {
      throw new Error(`${rustDebug(rel)} is not a path inside the cache`);
    }
    const direct = openDirect(rel);
    return direct !== undefined ? direct : openWalked(rel);
  }

  async function openWalked(rel) {
    const r = await beneath(rel);
    if (r.errno === 'ENOENT' || r.errno === 'ENOTDIR') return null;
    if (r.errno === 'EXDEV' || r.errno === 'ELOOP') {
      throw notFollowed(display(rel));
    }
    if (r.errno) throw osError(r.error, display(rel));
    let fd;
    try {
      fd = openSync(r.real, OPEN_FLAGS);
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
      if (e.code === 'ELOOP') throw notFollowed(display(rel));
      throw osError(e, display(rel));
    }
    let st;
    try {
      st = fstatSync(fd);
    } catch (e) {
      closeQuietly(fd);
      throw osError(e, display(rel));
    }
    if (!st.isFile()) {
      closeQuietly(fd);
      throw kindError(`${display(rel)} is not a regular file (found ${fileTypeName(st)}); refusing to read it`, 'InvalidData');
    }
    return { fd, size: st.size };
  }

  /** The whole of an opened small file, at once when it is small enough to be read so. */
  function readWhole(rel, opened) {
    if (opened === null) return null;
    const { fd, size } = opened;
    const fail = (e) => {
      closeQuietly(fd);
      throw osError(e, display(rel));
    };
    // Its size and one byte more first: one read, and a short one tells the end.
    const ask = Math.min(size + 1, SMALL_FILE_CAP + 1);
    if (ask <= SYNC_READ) {
      let bytesRead;
      const buf = Buffer.allocUnsafe(ask);
      try {
        bytesRead = readSync(fd, buf, 0, ask, null);
      } catch (e) {
        fail(e);
      }
      if (bytesRead < ask) {
        closeQuietly(fd);
        return new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
      }
      return readRest(fd, [buf], ask, CHUNK_SIZE).catch(fail);
    }
    return readRest(fd, [], 0, ask).catch(fail);
  }

  /**
   * Reads on (after `parts`, `total` bytes; `first` bytes asked first) to the end or past the
   * cap, then closes `fd`.
   */
  async function readRest(fd, parts, total, first) {
    let ask = Math.min(first, SMALL_FILE_CAP + 1 - total);
    while (total <= SMALL_FILE_CAP) {
      const buf = Buffer.allocUnsafe(ask);
      const bytesRead = await readChunk(fd, buf, ask);
      if (bytesRead === 0) break;
      parts.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (bytesRead < ask) break;
      ask = Math.min(CHUNK_SIZE, SMALL_FILE_CAP + 1 - total);
    }
    closeQuietly(fd);
    const out = parts.length === 1 ? parts[0] : Buffer.concat(parts, total);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  /**
   * `f(value)` of `opening()`'s value or of the promise it gives; an error thrown at once comes
   * back as a rejected promise, as from an async function.
   */
  function then(opening, f) {
    try {
      const value = opening();
      return typeof value?.then === 'function' ? value.then(f) : f(value);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The names in a folder ("" or "nar") that are part of the cache (native: `DirStorage::list`). */
  async function list(folder) {
    let real = root;
    let shown = given;
    if (folder !== '') {
      shown = display(folder);
      const r = await beneath(folder);
      if (r.errno === 'ENOENT') return [];
      if (r.errno === 'EXDEV' || r.errno === 'ELOOP') {
        throw notFollowed(shown);
      }
      if (r.errno) throw osError(r.error ?? errnoError(r.errno), shown);
      real = r.real;
    }
    let entries;
    try {
      entries = await readdir(real, { withFileTypes: true, encoding: 'buffer' });
    } catch (e) {
      throw osError(e, shown);
    }
    const prefix = folder === '' ? '' : `${folder}/`;
    const names = [];
    for (const entry of entries) {
      if (entry.isDirectory()) continue;
      const name = utf8Name(entry.name);
      if (name === null) continue;
      // A symlink is part of the cache only if it leads to a regular file inside it (dangling,
      // leading out or to something else: not listed; another error fails the listing).
      if (entry.isSymbolicLink()) {
        let inside;
        try {
          inside = await openRegular(`${prefix}${name}`);
        } catch (e) {
          if (e.kind === 'PermissionDenied' || e.kind === 'InvalidData') continue;
          throw e;
        }
        if (inside === null) continue;
        closeQuietly(inside.fd);
      }
      names.push(name);
    }
    return listedNames(folder, names);
  }

  /** An opened file's chunks (see openFile). */
  function chunks({ fd, size }) {
    let closed = false;
    let left = size;
    const close = () => {
      if (!closed) {
        closed = true;
        closeQuietly(fd);
      }
      return Promise.resolve();
    };
    const got = (buf, ask, bytesRead) => {
      left = Math.max(0, left - bytesRead);
      if (bytesRead < ask) close();
      return bytesRead === 0 ? null : new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
    };
    const failed = (e) => {
      close();
      throw ioError(e);
    };
    return {
      size,
      next() {
        if (closed) return null;
        // What is left and one byte more: a short read is the end, without another read.
        const ask = Math.min(CHUNK_SIZE, left + 1);
        const buf = Buffer.allocUnsafe(ask);
        let read;
        try {
          read = readChunk(fd, buf, ask);
        } catch (e) {
          failed(e);
        }
        return typeof read === 'number' ? got(buf, ask, read) : read.then((n) => got(buf, ask, n), failed);
      },
      close,
    };
  }

  const source = {
    root,

    // Each method gives its result at once when it has it (a file in the page cache), else a
    // promise of it: `await` takes either.

    /** The whole file (small files only: at most 16 MiB + 1 bytes are read). */
    readFile(rel) {
      return then(() => openRegular(rel), (opened) => readWhole(rel, opened));
    },

    /**
     * A stream of chunks of at most 1 MiB, with the file's `size` when opened; the file is
     * closed at the end, on an error, or by close().
     */
    openFile(rel) {
      return then(() => openRegular(rel), (opened) => (opened === null ? null : chunks(opened)));
    },

    /** The size of a regular file; null when absent (an error for anything else, as natively). */
    fileSize(rel) {
      return then(() => openRegular(rel), (opened) => {
        if (opened === null) return null;
        closeQuietly(opened.fd);
        return opened.size;
      });
    },

    listNarinfos: () => list(''),

    listNarFiles: () => list('nar'),
  };
  made.add(source);
  return source;
}

/** The sources dirSource made (other objects may have a `root` too). */
const made = new WeakSet();

/** The directory of a source dirSource made, else null. */
export function directoryOf(source) {
  return made.has(source) ? source.root : null;
}
