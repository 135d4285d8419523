// A RawSource over a cache directory (Node only), behaving as nar-tool's native DirStorage does,
// so that the wasm verifier reports exactly what `nar-tool verify` reports:
// - paths stay inside the directory: `..`, empty components, a leading `/` or NUL are refused,
//   and a symlink is followed only when it resolves inside the directory;
// - files are streamed in chunks of 1 MiB through a file handle;
// - I/O errors carry the messages Rust prints for them ("No such file or directory (os error 2)").

import { realpathSync } from 'node:fs';
import { open, readdir, realpath, lstat, stat } from 'node:fs/promises';
import path from 'node:path';
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

function isInside(root, real) {
  return real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * A RawSource over the cache directory `dir`. The directory is resolved when the source is
 * made (it must exist: the error otherwise is Rust's, e.g. "No such file or directory (os error 2)").
 */
export function dirSource(dir) {
  let root;
  try {
    root = realpathSync(dir instanceof URL ? dir : String(dir));
  } catch (e) {
    throw ioError(e);
  }

  /** The file for a relative path inside the root, or null when it does not exist. */
  async function resolve(rel) {
    if (rel === '' || rel.startsWith('/') || rel.includes('\0') || rel.split('/').some((c) => c === '..' || c === '')) {
      throw new Error(`${rustDebug(rel)} is not a path inside the cache`);
    }
    // The root is canonical: while no component below it is a symlink, the path is inside.
    let p = root;
    let symlink = false;
    for (const component of rel.split('/')) {
      p = path.join(p, component);
      let st;
      try {
        st = await lstat(p);
      } catch (e) {
        if (e.code === 'ENOENT') return null;
        throw ioError(e);
      }
      if (st.isSymbolicLink()) {
        symlink = true;
        break;
      }
    }
    if (!symlink) return p;
    let real;
    try {
      real = await realpath(path.join(root, rel));
    } catch (e) {
      if (e.code === 'ENOENT') return null;
      throw ioError(e);
    }
    if (!isInside(root, real)) throw new Error(`${rel} links outside the cache`);
    return real;
  }

  return {
    root,

    /** The whole file (small files only: at most 16 MiB + 1 bytes are read). */
    async readFile(rel) {
      const p = await resolve(rel);
      if (p === null) return null;
      let fh;
      try {
        fh = await open(p, 'r');
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
        throw ioError(e);
      } finally {
        await fh?.close().catch(() => {});
      }
    },

    /** A stream of 1 MiB chunks; the handle is closed at the end, on an error, or by close(). */
    async openFile(rel) {
      const p = await resolve(rel);
      if (p === null) return null;
      let fh;
      try {
        fh = await open(p, 'r');
      } catch (e) {
        throw ioError(e);
      }
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

    /** The size of a regular file; null when absent or not a regular file. */
    async fileSize(rel) {
      const p = await resolve(rel);
      if (p === null) return null;
      let st;
      try {
        st = await stat(p);
      } catch (e) {
        throw ioError(e);
      }
      return st.isFile() ? st.size : null;
    },

    async listNarinfos() {
      try {
        const names = await readdir(root);
        return names.filter((n) => n.endsWith('.narinfo') && !n.startsWith('.'));
      } catch (e) {
        throw ioError(e);
      }
    },

    async listNarFiles() {
      let names;
      try {
        names = await readdir(path.join(root, 'nar'));
      } catch (e) {
        if (e.code === 'ENOENT') return [];
        throw ioError(e);
      }
      return names.filter((n) => !n.startsWith('.')).map((n) => `nar/${n}`);
    },
  };
}
