#!/usr/bin/env bash
# The lookup index at scale: a synthetic index of N paths (default 1 000 000), then the time of
# a lookup by hash part (one process answering 100 lookups, less one answering 1, per lookup),
# of one `nar-tool lookup` process, of a name search (every shard), of why-depends, and the
# peak memory of each; then `nar-tool serve` answering searches through curl (a hash part and a
# name, twice each: the first name search loads the index) and its peak memory; then the
# inspector in headless Chromium on the same cache (benches/index-browser.mjs: first page, the
# whole index read, a search, a sort of every row, a path opened, peak memory), when www/'s
# dependencies and the wasm build are there (scripts/test-www.sh installs them).
# Usage: benches/index.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release -q --bin nar-tool --example synth_index
T=${CARGO_TARGET_DIR:-target}/release
B=$T/nar-tool
WORK=$(mktemp -d)
SERVE=
trap '[ -z "$SERVE" ] || kill "$SERVE" 2>/dev/null; rm -rf "$WORK"' EXIT
echo "== writing the index of $N synthetic paths"
/usr/bin/time -f "   %e s, peak %M KiB" $T/examples/synth_index "$WORK/cache" "$N" >"$WORK/hashes"
du -sh "$WORK/cache/nar-tool-index" | sed 's/^/   size: /'
mapfile -t H <"$WORK/hashes"
timed() { # prints "SECONDS PEAK_KIB" of a command, its output discarded
    /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1
}
one=$(timed $B lookup "$WORK/cache" "${H[1]}")
many=$(timed $B lookup "$WORK/cache" "${H[@]:1}")
n=$((${#H[@]} - 1))
echo "== lookup by hash part"
awk -v one="$one" -v many="$many" -v n="$n" 'BEGIN {
    split(one, a, " "); split(many, b, " ");
    printf "   one process, one lookup: %.3f s (peak %d KiB)\n", a[1], a[2];
    printf "   one process, %d lookups: %.3f s (peak %d KiB): %.1f ms a lookup\n", n, b[1], b[2], (b[1] - a[1]) * 1000 / (n - 1) }'
echo "== lookup --referrers of the most referenced path (glibc)"
timed $B lookup --referrers "$WORK/cache" "${H[0]}" | awk '{ printf "   %.2f s (peak %d KiB)\n", $1, $2 }'
echo "== lookup by name (reads every shard)"
timed $B lookup "$WORK/cache" pkg-4242-1 | awk '{ printf "   %.2f s (peak %d KiB)\n", $1, $2 }'
echo "== why-depends from a late path to glibc"
timed $B why-depends "$WORK/cache" "${H[$n]}" "${H[0]}" | awk '{ printf "   %.2f s (peak %d KiB)\n", $1, $2 }'
echo "== serve: searches through curl"
printf 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n' >"$WORK/cache/nix-cache-info"
$B serve --listen 127.0.0.1:0 "$WORK/cache" 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do grep -q 'http://' "$WORK/serve.log" && break; sleep 0.1; done
ADDR=$(grep -o 'http://[^ ]*' "$WORK/serve.log" | head -1)
search() { # prints "STATUS SECONDS BYTES" of one search
    curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "$ADDR/_nar-tool/lookup?$1"
}
while IFS='|' read -r what q; do
    search "$q" | awk -v what="$what" '{ printf "   %-46s %s in %.3f s (%d bytes)\n", what ":", $1, $2, $3 }'
done <<SEARCHES
a hash part (a few shards read)|q=${H[1]}
a name, first search (loads the index)|q=pkg-4242-1
a name, second search|q=pkg-4242-1
another hash part (from the index loaded)|q=${H[2]}
glibc with its referrers (10 000 of them)|q=${H[0]}&referrers=1&limit=1
SEARCHES
awk '/VmHWM/ { printf "   serve peak memory: %d KiB\n", $2 }' "/proc/$SERVE/status"
kill "$SERVE"
SERVE=
if [ -d www/node_modules/playwright-core ] && [ -f pkg/wasm/nar_tool_bg.wasm ]; then
    echo "== the inspector in headless Chromium (benches/index-browser.mjs)"
    NAR_TOOL_BIN=$B NAR_BENCH_CACHE=$WORK/cache NAR_BENCH_SEARCH=pkg-4242-1 node benches/index-browser.mjs |
        tr -d '{}"' | tr ',' '\n' | sed 's/^/   /; s/:/: /'
else
    echo "== the inspector: skipped (run scripts/test-www.sh once for www/node_modules and pkg/wasm)"
fi
