#!/usr/bin/env bash
# The inspector (www/) and serve: end-to-end tests in headless Chromium (playwright-core driving
# Debian's chromium) and a bounded load test of `nar-tool serve`. Called by scripts/test.sh on a
# fresh clone; idempotent: installs www/'s devDependencies, builds the wasm package if pkg/wasm is
# absent and the nar-tool binary, then runs `node --test`.
#   LOAD_SECONDS, LOAD_CLIENTS   the load test's length (default 4 s) and clients (default 64)
#   NAR_TOOL_BIN                 the binary to serve with (default target/debug/nar-tool)
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

if [ -z "${NAR_TOOL_BIN:-}" ]; then
  echo "== www: building nar-tool"
  cargo build --quiet --bin nar-tool
fi

echo "== www: end-to-end and hostile-cache (Chromium) and load tests"
cd www
node --test --test-concurrency=1 test/e2e.test.mjs test/hostile.test.mjs test/views.test.mjs test/layout.test.mjs test/load.test.mjs
echo "test-www: screenshots in target/www-screenshots/"
