#!/usr/bin/env bash
# Benchmark of verify in Node (`nar-cache-verify`, the wasm build of the same verifier) against
# native `nar-tool verify --jobs 1` on the same caches: one store path whose NAR is ~1 GiB,
# compressed with xz and with zstd, signed, checked with the key trusted.
#
# The large path (built once, deterministic) is a directory of
#   real/        a real tree (default: the verify benchmark's big-src, i.e. the stable Rust
#                toolchain's lib/rustlib and bin, ~350 MB; else NAR_BENCH_BIG_TREE, /usr/lib/…)
#   random.bin   pseudo-random bytes filling the NAR up to 1 GiB (incompressible: there the
#                cost is hashing, not decompressing)
# laid out as a store path in a store root of its own (`nar-tool store-path` names it as
# `nix-store --add` would) and turned into caches by `nar-tool build-cache --scan-references`.
#
# Commands timed (each after one warm-up run, rounds interleaved, page cache warm):
#   native-1t  nar-tool verify --jobs 1, NAR_TOOL_VERIFY_PIPELINE=0: one thread, the target's
#              baseline ("Node within 3x of native single-threaded")
#   native     nar-tool verify --jobs 1 as it runs by default (a large NAR is split over two
#              threads, decompression | hashing and parsing, when a core is free)
#   node       node pkg/bin/nar-cache-verify.js (wasm: one thread)
# Peak RSS by GNU time (%M): the memory bound for a 1 GiB NAR.
#
# A benchmark, not a test: run it on demand, on a quiet machine.
#
#   benches/node-verify.sh
#
# Environment:
#   NAR_BENCH_DIR       datasets (default ${XDG_CACHE_HOME:-~/.cache}/nar-tool-bench; this script
#                       uses node-verify/, ~3 GB)
#   NAR_BENCH_BIG_TREE  the real tree inside the path (see above)
#   NAR_BENCH_SIZE      NAR size in bytes to fill up to (default 1073741824)
#   NAR_BENCH_RUNS      timed runs per command (default 3)
#   NAR_BENCH_ONLY      subset of: xz zstd (default both)
#   NAR_BENCH_RT        1: run every timed command under `chrt -f 10` (SCHED_FIFO; root only),
#                       which gives it a core before the machine's other work: a quiet machine
#                       on a shared one (as benches/verify.sh does)
#
# Requires: cargo, node >= 20, wasm-pack (scripts/setup.sh), python3, GNU time at /usr/bin/time.
# Writes bench-results/node-verify.txt and bench-results/node-verify.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"

runs=${NAR_BENCH_RUNS:-3}
only=${NAR_BENCH_ONLY:-xz zstd}
size=${NAR_BENCH_SIZE:-1073741824}
bench_root=${NAR_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nar-tool-bench}
bench_dir=$bench_root/node-verify
results_dir=$root/bench-results
mkdir -p "$results_dir" "$bench_dir"
make_work nar-node-bench

need cargo node python3
need_gnu_time

ours=$(release_bin)
wasm_build_if_stale
node_cli=$root/pkg/bin/nar-cache-verify.js

# ---------------------------------------------------------------------------------------------
# The dataset (built once; delete $bench_dir to rebuild).
cd "$bench_dir"
key=$(bench_key "$ours" node-verify-bench-1)

pick_real() {
  if [ -n "${NAR_BENCH_BIG_TREE:-}" ]; then echo "$NAR_BENCH_BIG_TREE"; return; fi
  [ -d "$bench_root/verify/big-src" ] && { echo "$bench_root/verify/big-src"; return; }
  local t
  for t in "$HOME"/.rustup/toolchains/stable-*/lib/rustlib /usr/lib/x86_64-linux-gnu /usr/lib; do
    [ -d "$t" ] && { echo "$t"; return; }
  done
  die "no real tree for the large path; set NAR_BENCH_BIG_TREE"
}
if [ ! -s big-path ]; then
  src=$(pick_real)
  echo "== the large path: $src plus random bytes up to $size bytes of NAR"
  rm -rf big-src store && mkdir big-src
  cp -r "$src" big-src/real
  real_nar=$("$ours" dump big-src/real | wc -c)
  random_file big-src/random.bin $((size - real_nar - 1024))
  p=$("$ours" store-path --name node-verify-big big-src)
  mkdir -p "store$(dirname "$p")"
  mv big-src "store$p"
  echo "$p" >big-path
fi
big=$(cat big-path)
for c in $only; do
  if [ ! -e "big-$c/.complete" ]; then
    echo "== building big-$c (xz takes minutes)"
    rm -rf "big-$c"
    "$ours" build-cache -q --store-root "$bench_dir/store" --scan-references --to "big-$c" --compression "$c" --sign secret "$big"
    touch "big-$c/.complete"
  fi
done
cd "$root"

# ---------------------------------------------------------------------------------------------
warn_if_busy

runs_tsv=$work/runs.tsv
meta=$work/meta.tsv
: >"$runs_tsv"
: >"$meta"
rt=()
if [ "${NAR_BENCH_RT:-0}" = 1 ]; then
  command -v chrt >/dev/null || die "NAR_BENCH_RT=1 needs chrt"
  [ "$(id -u)" = 0 ] || die "NAR_BENCH_RT=1 needs root (SCHED_FIFO)"
  rt=(chrt -f 10)
fi
timed() {  # cache label command
  gnu_time "$work/time" "${rt[@]}" sh -c "$3" >/dev/null 2>"$work/err" ||
    die "$2 failed on $1: $3: $(cat "$work/err")"
  printf '%s\t%s\t%s\n' "$1" "$2" "$(tail -n1 "$work/time" | tr ' ' '\t')" >>"$runs_tsv"
}
for c in $only; do
  dir=$bench_dir/big-$c
  D=$(q "$dir")
  K=$(q "$key")
  declare -A cmd=(
    [native-1t]="NAR_TOOL_VERIFY_PIPELINE=0 $(q "$ours") verify --jobs 1 -q --trusted-key $K $D"
    [native]="$(q "$ours") verify --jobs 1 -q --trusted-key $K $D"
    [node]="node $(q "$node_cli") -q --trusted-key $K $D"
  )
  labels=(native-1t native node)
  # Correctness first: the same verdict, OK.
  a=$(sh -c "${cmd[native-1t]} --json") || die "nar-tool verify fails on $dir"
  b=$(sh -c "${cmd[node]} --json") || die "nar-cache-verify fails on $dir"
  [ "$a" = "$b" ] || die "the reports differ on $dir"
  file_bytes=$(du -sb "$dir/nar" | cut -f1)
  nar_bytes=$(awk '/^NarSize:/ {s += $2} END {print s}' "$dir"/*.narinfo)
  printf '%s\t%s\t%s\n' "$c" "$file_bytes" "$nar_bytes" >>"$meta"
  echo "== big-$c: $nar_bytes bytes of NAR in $file_bytes bytes of $c"
  for l in "${labels[@]}"; do sh -c "${cmd[$l]}" >/dev/null 2>&1; done
  for r in $(seq 1 "$runs"); do
    for l in $(round_order "$r" "${labels[@]}"); do
      timed "$c" "$l" "${cmd[$l]}"
    done
    echo "   round $r/$runs: $(awk -v c="$c" -F'\t' '$1 == c {k[$2] = $3 "s " int($6 / 1024) "MiB"} END {for (l in k) printf "%s %s  ", l, k[l]}' "$runs_tsv")(load $(load))"
  done
  unset cmd
done

python3 - "$runs_tsv" "$meta" "$results_dir/node-verify.txt" "$results_dir/node-verify.json" "$(load)" \
  "$(nproc)" "$("$ours" --version)" "$(node --version)" "$runs" "${NAR_BENCH_RT:-0}" <<'EOF'
import json, statistics, sys, datetime
runs_path, meta_path, txt_path, json_path, load, ncores, ours, node, nruns, rt = sys.argv[1:11]
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
runs = {}
for line in open(runs_path):
    cache, label, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    runs.setdefault(cache, {}).setdefault(label, []).append((float(wall), float(user) + float(sys_), int(rss)))
doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu, "cores": int(ncores),
       "load_after": load, "rt": rt == "1", "ours": ours, "node": node, "runs": int(nruns), "caches": []}
out = [f"{'cache':<8} {'NAR MB':>7} {'native-1t s':>11} {'native s':>8} {'node s':>7} {'node/1t':>7} {'node/native':>11} "
       f"{'node MB/s':>9} {'RSS 1t':>8} {'RSS native':>10} {'RSS node':>8}"]
for line in open(meta_path):
    cache, fbytes, nbytes = line.rstrip("\n").split("\t")
    r = runs[cache]
    med = lambda l, i=0: statistics.median(x[i] for x in r[l])
    mib = lambda l: f"{med(l, 2) / 1024:.0f} MiB"
    one, nat, nod = med("native-1t"), med("native"), med("node")
    out.append(f"{cache:<8} {int(nbytes) / 1e6:7.0f} {one:11.2f} {nat:8.2f} {nod:7.2f} {nod / one:7.2f} {nod / nat:11.2f} "
               f"{int(nbytes) / 1e6 / nod:9.0f} {mib('native-1t'):>8} {mib('native'):>10} {mib('node'):>8}")
    doc["caches"].append({"cache": cache, "file_bytes": int(fbytes), "nar_bytes": int(nbytes), "runs": r,
                          "median_wall_s": {l: med(l) for l in r}, "median_max_rss_kib": {l: med(l, 2) for l in r},
                          "ratio_node_native_1t": nod / one, "ratio_node_native": nod / nat})
out += ["", f"median wall seconds of {nruns} interleaved runs (page cache warm); RSS = median peak RSS (GNU time).",
        "native-1t: nar-tool verify --jobs 1 with NAR_TOOL_VERIFY_PIPELINE=0 (one thread);",
        "native: --jobs 1 as by default (decompression | hashing on two threads when a core is free)."
        + (" Every command under chrt -f 10 (SCHED_FIFO)." if rt == "1" else ""),
        f"{cpu}, {ncores} cores, load average after: {load}. {ours}; node {node}."]
text = "\n".join(out) + "\n"
open(txt_path, "w").write(text)
json.dump(doc, open(json_path, "w"), indent=1)
print(text)
EOF
echo "== written: bench-results/node-verify.txt, bench-results/node-verify.json"
