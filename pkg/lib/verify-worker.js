// A helper thread of a shared verification (lib/verify-threads.js): checks the paths it claims
// with the same wasm verifier and sends their checks to the leading thread.

import { workerData } from 'node:worker_threads';
import { checkSharedPaths, initSync } from '../wasm/nar_tool.js';
import { configure } from './api.js';
import { dirSource } from './dir-source.js';
import { nodeSha256 } from './node-sha256.js';
import { claimFrom, testHooks } from './verify-threads.js';

const { module, root, options, counter, port } = workerData;
initSync({ module });
configure({ initialised: true });
const claims = new Int32Array(counter);
// The paths come once the leader has listed them.
const names = await new Promise((resolve) => port.once('message', resolve));
let claimed = 0;
const share = {
  claim: () => {
    if (testHooks.has('die') && claimed++ > 0) process.exit(3);
    return claimFrom(claims, names.length);
  },
  send: (text) => port.postMessage(text),
};
await checkSharedPaths(dirSource(root), { ...options, sha256: nodeSha256, share }, names);
port.close();
