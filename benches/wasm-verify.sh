#!/usr/bin/env bash
# The wasm verifier against native, side by side in one run (issue 13):
#   - `nar-cache-verify` (Node, pkg/) against `nar-tool verify --jobs 1` on 2 000 small paths,
#     on 50 000 small paths and on one path whose NAR is 1 GiB (target: Node ≤ 3× native);
#   - the inspector's "Verify the whole cache" (www/, headless Chromium driven by playwright-core,
#     the cache served by `nar-tool serve`) on the 50 000 paths (target: ≤ 5× native);
#   - Node's peak memory on a cache with many problems (bounded whatever their number).
#
#   benches/wasm-verify.sh                          # all, 3 interleaved runs each
#   NAR_BENCH_ONLY="small-2000" NAR_BENCH_RUNS=1 benches/wasm-verify.sh
#
# Environment:
#   NAR_BENCH_DIR     where datasets are kept (default ~/.cache/nar-tool-bench)
#   NAR_BENCH_RUNS    timed runs per command (default 3)
#   NAR_BENCH_ONLY    subset of: small-2000 small-50000 big browser problems (default: all)
#   NAR_BENCH_SIZE    the big NAR's size in bytes (default 1073741824)
#   NAR_BENCH_RT      1: every timed command under `chrt -f 10` (SCHED_FIFO; root only): a quiet
#                     machine on a shared one, as benches/verify.sh does
#   CHROMIUM          the browser (default /usr/bin/chromium)
#
# Requires: cargo, node >= 20, wasm-pack, nix-store (a chroot store), python3, GNU time; www's
# devDependencies (npm ci in www/) for the browser case. Writes bench-results/wasm-verify.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"

runs=${NAR_BENCH_RUNS:-3}
only=${NAR_BENCH_ONLY:-small-2000 small-50000 big browser problems}
size=${NAR_BENCH_SIZE:-1073741824}
bench_root=${NAR_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nar-tool-bench}
bench_dir=$bench_root/wasm-verify
results_dir=$root/bench-results
mkdir -p "$results_dir" "$bench_dir"
make_work nar-wasm-bench
need cargo node python3 nix-store
need_gnu_time
wants() { [[ " $only " == *" $1 "* ]]; }

ours=$(release_bin)
wasm_build_if_stale
node_cli=$root/pkg/bin/nar-cache-verify.js

# ---------------------------------------------------------------------------------------------
# The datasets (built once; delete $bench_dir to rebuild).
cd "$bench_dir"
key=$(bench_key "$ours" wasm-verify-bench-1)

# N small paths (1–3 files of 64 B–8 KiB each, deterministic), added to the chroot store in
# batches, then a signed zstd cache of them.
small_cache() { # N
  local n=$1
  [ -e "small-$n/.complete" ] && return
  echo "== small-$n: $n small store paths (nix-store --add, then build-cache)"
  rm -rf "src-$n" "small-$n" "store-$n"
  python3 - "src-$n" "$n" <<'EOF'
import os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
words = [f"w{i}" for i in range(500)]
for i in range(n):
    d = os.path.join(out, f"p{i:05d}")
    os.makedirs(os.path.join(d, "share"))
    for j in range(rng.randint(1, 3)):
        size = int(64 * 2 ** (rng.random() * 7))
        text = " ".join(rng.choice(words) for _ in range(size // 4))[:size]
        with open(os.path.join(d, "share", f"f{j}.txt"), "w") as f:
            f.write(f"path {i} file {j}\n{text}\n")
EOF
  find "src-$n" -mindepth 1 -maxdepth 1 -print0 | sort -z |
    xargs -0 -n 2000 nix-store --store "$bench_dir/store-$n" --add >"paths-$n"
  "$ours" build-cache -q --store-root "$bench_dir/store-$n" --to "small-$n" --compression zstd --sign secret --paths-from "paths-$n"
  rm -rf "src-$n"
  touch "small-$n/.complete"
}

# One path whose NAR is $size bytes: a real tree (documentation, libraries) and random bytes.
big_cache() {
  [ -e big/.complete ] && return
  echo "== big: one path of $size bytes of NAR (zstd)"
  rm -rf big big-src big-store
  mkdir -p big-src
  cp -r /usr/share/doc big-src/doc 2>/dev/null || true
  local real
  real=$("$ours" dump big-src | wc -c)
  random_file big-src/random.bin $((size - real - 1024))
  local p
  p=$("$ours" store-path --name wasm-verify-big big-src)
  mkdir -p "big-store$(dirname "$p")"
  mv big-src "big-store$p"
  "$ours" build-cache -q --store-root "$bench_dir/big-store" --scan-references --to big --compression zstd --sign secret "$p"
  rm -rf big-store
  touch big/.complete
}

# Many problems: the 50 000-path cache with every NAR file damaged and every narinfo given 30
# references that have no narinfo (so 32 problems a path: the NAR, 30 missing references, the
# signature that no longer matches): 1.6 million problems.
problems_cache() {
  [ -e problems/.complete ] && return
  small_cache 50000
  echo "== problems: small-50000 with every path damaged"
  rm -rf problems && cp -r small-50000 problems
  python3 - problems <<'EOF'
import os, random, sys
d = sys.argv[1]
rng = random.Random(3)
alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
for name in sorted(os.listdir(d)):
    if not name.endswith(".narinfo"):
        continue
    p = os.path.join(d, name)
    lines = open(p).read().splitlines()
    refs = " ".join("".join(rng.choice(alphabet) for _ in range(32)) + f"-missing-{i}" for i in range(30))
    lines = [f"References: {refs}" if l.startswith("References:") else l for l in lines]
    open(p, "w").write("\n".join(lines) + "\n")
for name in os.listdir(os.path.join(d, "nar")):
    open(os.path.join(d, "nar", name), "wb").write(b"x")
EOF
  touch problems/.complete
}

for c in $only; do
  case $c in
    small-*) small_cache "${c#small-}" ;;
    big) big_cache ;;
    browser) small_cache 50000 ;;
    problems) problems_cache ;;
    *) die "unknown case $c (small-2000 small-50000 big browser problems)" ;;
  esac
done
cd "$root"

# ---------------------------------------------------------------------------------------------
warn_if_busy
runs_tsv=$work/runs.tsv
: >"$runs_tsv"
rt=()
if [ "${NAR_BENCH_RT:-0}" = 1 ]; then
  command -v chrt >/dev/null || die "NAR_BENCH_RT=1 needs chrt"
  [ "$(id -u)" = 0 ] || die "NAR_BENCH_RT=1 needs root (SCHED_FIFO)"
  rt=(chrt -f 10)
fi
timed() { # case label command
  local rc=0
  gnu_time "$work/time" "${rt[@]}" sh -c "$3" >/dev/null 2>"$work/err" || rc=$?
  # Verifying the damaged cache fails by design (exit 1–7): only anything else is an error.
  if [ "$rc" -ne 0 ] && { [ "$1" != problems ] || [ "$rc" -gt 7 ]; }; then
    die "$2 failed on $1 (exit $rc): $3: $(cat "$work/err")"
  fi
  printf '%s\t%s\t%s\n' "$1" "$2" "$(tail -n1 "$work/time" | tr ' ' '\t')" >>"$runs_tsv"
}
K=$(q "$key")
# NODE_EXTRA_CA_CERTS makes Node read and parse that file of certificates as it starts, whether
# or not a connection is ever made (Node 20: ~60 ms for Debian's bundle, a tenth of Node's time on
# small-2000). It is a setting of the machine (a TLS-intercepting proxy's), not of Node or of the
# verifier: `node` runs without it; when it is set, `node+ca` runs as the machine has it too, and
# both are reported.
node_env=()
# `node` shares the paths between its worker threads (its default: the CPUs, at most 4);
# `node-1t` is the one thread (--threads 1), native's --jobs 1 in kind.
labels=(native-1t node node-1t)
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  node_env=(env -u NODE_EXTRA_CA_CERTS)
  labels+=(node+ca)
fi
for c in $only; do
  [ "$c" = browser ] && continue
  dir=$bench_dir/$c
  D=$(q "$dir")
  declare -A cmd=(
    [native-1t]="NAR_TOOL_VERIFY_PIPELINE=0 $(q "$ours") verify --jobs 1 -q --trusted-key $K $D"
    [node]="${node_env[*]} node $(q "$node_cli") -q --trusted-key $K $D"
    [node+ca]="node $(q "$node_cli") -q --trusted-key $K $D"
    [node-1t]="${node_env[*]} node $(q "$node_cli") --threads 1 -q --trusted-key $K $D"
  )
  # Correctness first: the same report, byte for byte.
  sh -c "${cmd[native-1t]} --json" >"$work/a.json" || [ "$c" = problems ] || die "nar-tool verify fails on $dir"
  sh -c "${cmd[node]} --json" >"$work/b.json" || [ "$c" = problems ] || die "nar-cache-verify fails on $dir"
  cmp -s "$work/a.json" "$work/b.json" || die "the reports differ on $dir"
  echo "== $c: $(grep -c . "$work/a.json") lines of report, the same from both"
  for r in $(seq 1 "$runs"); do
    case_labels=("${labels[@]}")
    [ "$c" = problems ] && case_labels=(native-1t node) # a fixed ~60 ms is nothing there
    for l in $(round_order "$r" "${case_labels[@]}"); do
      timed "$c" "$l" "${cmd[$l]}"
    done
    echo "   round $r/$runs: $(awk -v c="$c" -F'\t' '$1 == c {k[$2] = $3 "s " int($6 / 1024) "MiB"} END {for (l in k) printf "%s %s  ", l, k[l]}' "$runs_tsv")(load $(load))"
  done
  unset cmd
done

if wants browser; then
  dir=$bench_dir/small-50000
  [ -d www/node_modules/playwright-core ] || (cd www && npm ci --no-audit --no-fund --loglevel=error)
  native_json=$work/browser-native.json
  "$ours" verify --jobs 1 --json --trusted-key "$key" "$dir" >"$native_json" || die "nar-tool verify fails on $dir"
  for r in $(seq 1 "$runs"); do
    gnu_time "$work/time" "${rt[@]}" env NAR_BENCH_CACHE="$dir" NAR_BENCH_KEY="$key" NAR_BENCH_EXPECT="$native_json" \
      NAR_TOOL_BIN="$ours" node benches/wasm-verify-browser.mjs >"$work/browser.out" 2>"$work/err" ||
      die "the browser run failed: $(cat "$work/err")"
    # The in-page time (click to summary) replaces GNU time's wall time (browser start, page load).
    printf '%s\t%s\t%s\t0\t0\t%s\n' browser inspector "$(cat "$work/browser.out")" "$(cut -d' ' -f4 "$work/time")" >>"$runs_tsv"
    gnu_time "$work/time" "${rt[@]}" sh -c "NAR_TOOL_VERIFY_PIPELINE=0 $(q "$ours") verify --jobs 1 -q --trusted-key $K $(q "$dir")" >/dev/null
    printf '%s\t%s\t%s\n' browser native-1t "$(tail -n1 "$work/time" | tr ' ' '\t')" >>"$runs_tsv"
    echo "   browser round $r/$runs: inspector $(cat "$work/browser.out")s (load $(load))"
  done
fi

python3 - "$runs_tsv" "$results_dir/wasm-verify.txt" "$(load)" "$(nproc)" "$("$ours" --version)" "$(node --version)" "$runs" <<'EOF'
import statistics, sys
runs_path, txt_path, load, ncores, ours, node, nruns = sys.argv[1:8]
runs = {}
for line in open(runs_path):
    case, label, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    runs.setdefault(case, {}).setdefault(label, []).append((float(wall), int(rss)))
targets = {"small-2000": 3, "small-50000": 3, "big": 3, "browser": 5, "problems": None}
out = [f"{'case':<12} {'native-1t s':>11} {'wasm s':>8} {'ratio':>6} {'target':>7} {'RSS native':>10} {'RSS wasm':>9}"]
for case, r in runs.items():
    label = "inspector" if case == "browser" else "node"
    med = lambda l, i: statistics.median(x[i] for x in r[l])
    one, w = med("native-1t", 0), med(label, 0)
    t = targets.get(case)
    verdict = "-" if t is None else (f"≤{t} met" if w / one <= t else f"≤{t} MISSED")
    out.append(f"{case:<12} {one:11.2f} {w:8.2f} {w / one:6.2f} {verdict:>7} {med('native-1t', 1) / 1024:7.0f} MiB "
               f"{med(label, 1) / 1024:6.0f} MiB")
    if "node-1t" in r:
        t1 = med("node-1t", 0)
        out.append(f"{'  1 thread':<12} {'':11} {t1:8.2f} {t1 / one:6.2f} {'':>7}")
    if "node+ca" in r:
        ca = med("node+ca", 0)
        out.append(f"{'  +ca':<12} {'':11} {ca:8.2f} {ca / one:6.2f} {'':>7}")
out += ["", f"median of {nruns} interleaved runs, page cache warm; native-1t: nar-tool verify --jobs 1,",
        "NAR_TOOL_VERIFY_PIPELINE=0 (one thread); wasm: nar-cache-verify in Node (its default threads;",
        "'1 thread': --threads 1; without NODE_EXTRA_CA_CERTS;",
        "'+ca': with it, as this machine sets it), or (browser) the inspector's",
        "'Verify the whole cache' in headless Chromium, timed from the click to the summary (RSS: the whole",
        f"browser run's, the server included). {ncores} cores, load average after: {load}. {ours}; node {node}."]
text = "\n".join(out) + "\n"
open(txt_path, "w").write(text)
print(text)
EOF
echo "== written: bench-results/wasm-verify.txt"
