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

import { closeSync, constants, openSync, realpathSync } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
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

  /**
   * Opens a regular file: `{ fh, size }`, or null when absent; an error naming what is there if
   * it is not a regular file or leads outside (native: `Beneath::open_regular`).
   */
  async function openRegular(rel) {
    if (rel === '' || rel.startsWith('/') || rel.includes('\0') || rel.split('/').some((c) => c === '..' || c === '')) {
      throw new Error(`${rustDebug(rel)} is not a path inside the cache`);
    }
    let fh;
    try {
      const r = await beneath(rel);
      if (r.errno === 'ENOENT' || r.errno === 'ENOTDIR') return null;
      if (r.errno === 'EXDEV' || r.errno === 'ELOOP') {
        throw notFollowed(display(rel));
      }
      if (r.errno) throw osError(r.error, display(rel));
      try {
        fh = await open(r.real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
      } catch (e) {
        if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
        if (e.code === 'ELOOP') throw notFollowed(display(rel));
        throw osError(e, display(rel));
      }
      let st;
      try {
        st = await fh.stat();
      } catch (e) {
        throw osError(e, display(rel));
      }
      if (!st.isFile()) {
        throw kindError(`${display(rel)} is not a regular file (found ${fileTypeName(st)}); refusing to read it`, 'InvalidData');
      }
      return { fh, size: st.size };
    } catch (e) {
      await fh?.close().catch(() => {});
      throw e;
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
        await inside.fh.close().catch(() => {});
      }
      names.push(name);
    }
    return listedNames(folder, names);
  }

  return {
    root,

    /** The whole file (small files only: at most 16 MiB + 1 bytes are read). */
    async readFile(rel) {
      const opened = await openRegular(rel);
      if (opened === null) return null;
      const { fh } = opened;
      try {
        const parts = [];
        let total = 0;
        for (;;) {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK_SIZE, SMALL_FILE_CAP + 1 - total));
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          parts.push(buf.subarray(0, bytesRead));
          total += bytesRead;
          if (total > SMALL_FILE_CAP) break;
        }
        const out = Buffer.concat(parts, total);
        return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      } catch (e) {
        throw osError(e, display(rel));
      } finally {
        await fh.close().catch(() => {});
      }
    },

    /** A stream of 1 MiB chunks; the handle is closed at the end, on an error, or by close(). */
    async openFile(rel) {
      const opened = await openRegular(rel);
      if (opened === null) return null;
      const { fh } = opened;
      let closed = false;
      const close = async () => {
        if (!closed) {
          closed = true;
          await fh.close().catch(() => {});
        }
      };
      return {
        async next() {
          if (closed) return null;
          try {
            const buf = new Uint8Array(CHUNK_SIZE);
            const { bytesRead } = await fh.read(buf, 0, CHUNK_SIZE, null);
            if (bytesRead === 0) {
              await close();
              return null;
            }
            return bytesRead === CHUNK_SIZE ? buf : buf.subarray(0, bytesRead);
          } catch (e) {
            await close();
            throw ioError(e);
          }
        },
        close,
      };
    },

    /** The size of a regular file; null when absent (an error for anything else, as natively). */
    async fileSize(rel) {
      const opened = await openRegular(rel);
      if (opened === null) return null;
      await opened.fh.close().catch(() => {});
      return opened.size;
    },

    listNarinfos: () => list(''),

    listNarFiles: () => list('nar'),
  };
}
