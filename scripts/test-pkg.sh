#!/usr/bin/env bash
# Builds the wasm package (pkg/) and runs its tests. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test-pkg: not written yet"
