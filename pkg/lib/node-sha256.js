// Node's SHA-256 for the wasm verifier (Node only).

import { createHash } from 'node:crypto';

/**
 * SHA-256 by OpenSSL (the CPU's SHA instructions where it has them): several times faster than
 * the wasm's portable code, and hashing is most of what verifying costs. `update` gets a view of
 * wasm memory, which createHash consumes at once.
 */
export function nodeSha256() {
  const h = createHash('sha256');
  return {
    update(bytes) {
      h.update(bytes);
    },
    digest() {
      return new Uint8Array(h.digest());
    },
  };
}
