#!/usr/bin/env bash
# Load benchmark of `nar-tool serve`: C concurrent keep-alive clients fetch the NAR files of a
# cache in a loop for S seconds; every body's length and SHA-256 is compared with the file on
# disk (www/test/load.mjs). Prints one JSON line per run: requests/s, MiB/s, latency quantiles,
# errors (must be 0), for a small-file cache (the corpus, 9 NARs of 148 B to 1.2 MB) and a
# large-file one (16 NARs of 8 MiB).
#
# A benchmark, not a test (the short version of it runs in scripts/test-www.sh). Run it on a quiet
# machine: the clients share the CPU with the server. See benches/README.md.
#
#   benches/serve-load.sh
#
# Environment:
#   LOAD_SECONDS   per run (default 15)
#   LOAD_CLIENTS   space-separated client counts (default "1 16 64 256")
#   LOAD_THREADS   serve --threads (default 8)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"
seconds=${LOAD_SECONDS:-15}
clients=${LOAD_CLIENTS:-1 16 64 256}
threads=${LOAD_THREADS:-8}

NAR_TOOL_BIN=$(release_bin)
export NAR_TOOL_BIN
mkdir -p bench-results
out="bench-results/serve-load.jsonl"
: > "$out"

make_work nar-serve-load
cp -r tests/fixtures/corpus/caches/zstd "$work/small"
chmod -R u+w "$work/small"
# The large cache: 16 files of 8 MiB of random bytes, served as NAR files (serve does not care
# what is inside; the client checks every byte).
mkdir -p "$work/large/nar"
cp tests/fixtures/corpus/caches/zstd/nix-cache-info "$work/large/"
for i in $(seq 1 16); do
  head -c $((8 * 1024 * 1024)) /dev/urandom > "$work/large/nar/$(printf '%052d' "$i").nar"
done

echo "nar-tool serve --threads $threads, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for cache in small large; do
  for c in $clients; do
    line=$(node www/test/load.mjs --cache "$work/$cache" --clients "$c" --seconds "$seconds" --threads "$threads")
    echo "{\"cache\":\"$cache\",${line#\{}" | tee -a "$out"
  done
done
echo "results in $out"
