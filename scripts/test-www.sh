#!/usr/bin/env bash
# Runs the inspector's browser tests and serve's load test. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test-www: not written yet"
