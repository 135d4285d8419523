#!/usr/bin/env bash
# Builds the wasm package (pkg/) and runs its tests. Called by scripts/test.sh (after
# scripts/setup.sh, which installs wasm-pack and wasm-bindgen-cli); idempotent.
#   1. pkg's devDependencies (npm ci from the committed lockfile);
#   2. the native nar-tool the differential tests compare against (cargo build, debug);
#   3. the wasm build: wasm-pack build --target web --out-dir pkg/wasm --no-opt;
#   4. the wasm-bindgen tests in Node (tests/wasm_api.rs), when they exist;
#   5. npm test: tsc over the types, then node --test test/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

command -v node >/dev/null || { echo "test-pkg: node is missing (scripts/setup.sh installs it)" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || { echo "test-pkg: Node >= 20 is needed, this is $(node --version)" >&2; exit 1; }
command -v wasm-pack >/dev/null || { echo "test-pkg: wasm-pack is missing: run scripts/setup.sh" >&2; exit 1; }

echo "-- npm devDependencies"
(cd pkg && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi)

echo "-- native nar-tool (for the differential tests)"
cargo build --quiet --bin nar-tool
export NAR_TOOL_BIN="${NAR_TOOL_BIN:-$PWD/target/debug/nar-tool}"

echo "-- wasm build"
(cd pkg && npm run --silent build)

if [ -f tests/wasm_api.rs ]; then
  echo "-- wasm-bindgen tests in Node"
  wasm-pack test --node -- --test wasm_api
fi

echo "-- npm test"
(cd pkg && npm test)
