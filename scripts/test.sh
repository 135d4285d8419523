#!/usr/bin/env bash
# Runs every test: sets the machine up; checks formatting, clippy's lints and the docs first (so
# they fail fast); then unit, golden, property, hostile-input, CLI and differential (real Nix)
# tests and the fuzz-crash replay (one integration-test binary, tests/it), and the wasm32 build of
# the library.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NIX_REMOTE=local
echo "== lints: rustfmt, clippy (warnings are errors), rustdoc (warnings are errors)"
cargo fmt --check
cargo clippy --quiet --all-targets -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --quiet --no-deps
echo "== wasm32 build of the library"
cargo build --quiet --lib --target wasm32-unknown-unknown
echo "== a real S3 server (SeaweedFS, loopback) for the object-storage tests; stopped at the end"
s3dir=$(mktemp -d /tmp/nar-tool-s3.XXXXXX)
trap 'bash scripts/s3-server.sh stop "$s3dir"; rm -rf "$s3dir"' EXIT
bash scripts/s3-server.sh start "$s3dir" --watch $$
export NAR_TOOL_TEST_S3_ENV=$s3dir/s3.env
echo "== cargo test"
cargo test --all-targets 2>&1
echo "== the wasm package (pkg/): build, wasm-bindgen tests, node --test"
bash scripts/test-pkg.sh
echo "== the inspector (www/) and serve: browser end-to-end and load tests"
bash scripts/test-www.sh
