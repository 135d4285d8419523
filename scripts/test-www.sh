#!/usr/bin/env bash
# The inspector (www/) and serve: end-to-end tests in headless Chromium (playwright-core driving
# Debian's chromium) and a bounded load test of `nar-tool serve`. Called by scripts/test.sh on a
# fresh clone; idempotent: installs www/'s devDependencies, builds the wasm package if pkg/wasm is
# absent and the nar-tool binary, then runs `node --test`.
#   LOAD_SECONDS, LOAD_CLIENTS   the load test's length (default 4 s) and clients (default 64)
#   NAR_TOOL_BIN                 the binary to serve with (default target/debug/nar-tool)
#   NAR_TOOL_EMBEDDED_BIN        one built with the inspector inside (default: built here)
#   CHROMIUM                     the browser (default /usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "test-www: $chromium is missing (scripts/setup.sh installs Debian's chromium)" >&2; exit 1; }
command -v node >/dev/null || { echo "test-www: node is missing (scripts/setup.sh installs it)" >&2; exit 1; }

echo "== www: npm ci"
(cd www && npm ci --no-audit --no-fund --loglevel=error)

if [ ! -f pkg/wasm/nar_tool_bg.wasm ] || [ ! -f pkg/wasm/nar_tool.js ]; then
  echo "== www: building the wasm package (pkg/wasm)"
  wasm-pack build --target web --out-dir pkg/wasm --no-opt
fi

# The binary with the inspector built in (from this checkout's www/, pkg/ and pkg/wasm), copied
# aside: test/embedded.test.mjs serves with it as an installed binary would.
if [ -z "${NAR_TOOL_EMBEDDED_BIN:-}" ]; then
  echo "== www: building nar-tool with the inspector built in (feature embed-inspector)"
  NAR_TOOL_WASM_DIR="$PWD/pkg/wasm" cargo build --quiet --bin nar-tool --features embed-inspector
  target_dir=${CARGO_TARGET_DIR:-$PWD/target}
  cp "$target_dir/debug/nar-tool" "$target_dir/nar-tool-embedded"
  export NAR_TOOL_EMBEDDED_BIN=$target_dir/nar-tool-embedded
fi

if [ -z "${NAR_TOOL_BIN:-}" ]; then
  echo "== www: building nar-tool"
  cargo build --quiet --bin nar-tool
fi

echo "== www: end-to-end and hostile-cache (Chromium) and load tests"
cd www
node --test --test-concurrency=1 test/source.test.mjs test/e2e.test.mjs test/bulk.test.mjs test/index.test.mjs test/embedded.test.mjs test/hostile.test.mjs test/views.test.mjs test/layout.test.mjs test/load.test.mjs
echo "test-www: screenshots in target/www-screenshots/"
