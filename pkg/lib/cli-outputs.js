// The files nar-cache-verify writes besides stdout (a JUnit report, GitHub's step summary),
// opened before the cache is verified — a path that cannot be written is an error at once, not
// after the whole run — and written when the report is ready.

import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ioError } from './dir-source.js';

/** Every byte of `text` to the open file `fd`. */
function writeAll(fd, text) {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
}

/** Why `file` cannot be written, as nar-tool words it (`writing <file>: <io error>`). */
function writingError(file, e) {
  return new Error(`writing ${file}: ${ioError(e).message}`);
}

/**
 * A file replaced atomically: a temporary file beside it is created now (so a directory that
 * does not exist or cannot be written fails here), filled, synced and renamed into place by
 * commit(). discard() (also run at exit) removes the temporary file if it was not committed.
 */
export function atomicOutput(file) {
  let existing = null;
  try {
    existing = statSync(file);
  } catch (e) {
    if (e.code !== 'ENOENT') throw writingError(file, e);
  }
  if (existing?.isDirectory()) throw writingError(file, { code: 'EISDIR', errno: -21 });
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  let fd;
  try {
    fd = openSync(tmp, 'wx', 0o644);
  } catch (e) {
    throw writingError(file, e);
  }
  let done = false;
  const discard = () => {
    if (done) return;
    done = true;
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        // Closed already.
      }
    }
    rmSync(tmp, { force: true });
  };
  process.on('exit', discard);
  return {
    commit(text) {
      try {
        writeAll(fd, text);
        fsyncSync(fd);
        closeSync(fd);
        fd = null;
        renameSync(tmp, file);
        done = true;
      } catch (e) {
        discard();
        throw writingError(file, e);
      } finally {
        process.off('exit', discard);
      }
    },
    discard,
  };
}

/** A file appended to (GitHub's `$GITHUB_STEP_SUMMARY`), opened now. */
export function appendOutput(file) {
  let fd;
  try {
    fd = openSync(file, 'a');
  } catch (e) {
    throw writingError(file, e);
  }
  return {
    commit(text) {
      try {
        writeAll(fd, text);
      } catch (e) {
        throw writingError(file, e);
      } finally {
        closeSync(fd);
      }
    },
  };
}
