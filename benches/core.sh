#!/usr/bin/env bash
# Benchmark of the core: `nar-tool hash` against `nix-hash --type sha256` and `nar-tool dump`
# against `nix-store --dump`, on a real tree (~40 000+ files) and on synthetic ones, with wall
# times (hyperfine, warm page cache), the ratios ours/Nix's and peak memory (GNU time).
# A benchmark, not a test: run it on demand, on a quiet machine. See benches/README.md.
#
#   benches/core.sh [REAL_TREE]
#
# Environment:
#   NAR_BENCH_REAL   the real tree (default: the first argument, else the stable Rust toolchain
#                    under ~/.rustup, else the largest /usr/lib/python3*)
#   NAR_BENCH_DIR    where the synthetic trees are generated once and kept (default
#                    ${XDG_CACHE_HOME:-~/.cache}/nar-tool-bench; ~1.3 GB)
#   NAR_BENCH_RUNS   hyperfine runs per command and round (default 3)
#   NAR_BENCH_ROUNDS rounds per pair of commands, alternating which goes first (default 3)
#   NAR_BENCH_WAIT   seconds to wait, before each round, for the cores to be idle (default 600)
#   NAR_BENCH_MAX_OTHER  a round during which other work took more cores than this is run
#                    again (default 0.15)
#   NAR_BENCH_ONLY   space-separated subset of: real synthetic big (default: all three)
#   NAR_BENCH_QUICK  1: 2 rounds of 2 runs, no waiting (a smoke test of the script itself)
#
# Requires: cargo, nix-hash and nix-store (Nix; NIX_REMOTE=local is set here), hyperfine,
# GNU time at /usr/bin/time, python3 (tree generation and the table), cmp.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export NIX_REMOTE=local

runs=${NAR_BENCH_RUNS:-3}
rounds=${NAR_BENCH_ROUNDS:-3}
wait_max=${NAR_BENCH_WAIT:-600}
if [ "${NAR_BENCH_QUICK:-0}" = 1 ]; then runs=2; rounds=2; wait_max=0; export NAR_BENCH_MAX_OTHER=99; fi
only=${NAR_BENCH_ONLY:-real synthetic big}
bench_dir=${NAR_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nar-tool-bench}
results_dir=$root/bench-results
mkdir -p "$results_dir" "$bench_dir"
make_work nar-bench

need cargo nix-hash nix-store hyperfine python3 cmp
need_gnu_time

# ---------------------------------------------------------------------------------------------
ours=$(release_bin)

# ---------------------------------------------------------------------------------------------
# The trees.
pick_real() {
  local t=${NAR_BENCH_REAL:-${1:-}}
  if [ -n "$t" ]; then echo "$t"; return; fi
  for t in "$HOME"/.rustup/toolchains/stable-*/; do [ -d "$t" ] && { echo "${t%/}"; return; }; done
  local best="" n=0 c
  for t in /usr/lib/python3*/; do
    c=$(find "$t" -type f | wc -l)
    [ "$c" -gt "$n" ] && { n=$c; best=${t%/}; }
  done
  [ -n "$best" ] && { echo "$best"; return; }
  die "no real tree found; pass one as argument or NAR_BENCH_REAL"
}
real=$(pick_real "${1:-}")
[ -e "$real" ] || die "$real does not exist"

synthetic=$bench_dir/synthetic-v1
big=$bench_dir/big-1GiB-v1
if [[ " $only " == *" synthetic "* || " $only " == *" big "* ]]; then
  # Deterministic (fixed seeds): 20 000 small files (log-uniform 0 B – 64 KiB, 10 % executable)
  # in 20×10 nested directories, 500 symlinks, 4 empty directories, 4 files of 48 MiB
  # (~310 MB in all); and one file of 1 GiB for the memory bound.
  python3 - "$synthetic" "$big" "$only" <<'EOF'
import os, random, sys, shutil
synthetic, big, only = sys.argv[1], sys.argv[2], sys.argv[3].split()

def write_random(path, size, rng, mode=0o644):
    with open(path, "wb") as f:
        while size > 0:
            n = min(size, 8 << 20)
            f.write(rng.randbytes(n))
            size -= n
    os.chmod(path, mode)

if "synthetic" in only and not os.path.exists(synthetic + "/.complete"):
    shutil.rmtree(synthetic, ignore_errors=True)
    rng = random.Random(20240601)
    tree = synthetic + "/tree"
    files = []
    for a in range(20):
        for b in range(10):
            d = f"{tree}/pkg-{a:02d}/mod_{b}"
            os.makedirs(d)
            for c in range(100):
                size = int(2 ** rng.uniform(0, 16)) - 1
                name = f"{d}/file{c:03d}" + rng.choice([".py", ".rs", ".h", ".txt", "", ".so.1"])
                write_random(name, size, rng, 0o755 if rng.random() < 0.1 else 0o644)
                files.append(name)
    for i in range(500):
        src = rng.choice(files)
        link = f"{tree}/pkg-{i % 20:02d}/link-{i:03d}"
        os.symlink(os.path.relpath(src, os.path.dirname(link)), link)
    for i in range(4):
        os.makedirs(f"{tree}/empty-{i}")
        write_random(f"{tree}/blob-{i}.bin", 48 << 20, rng)
    open(synthetic + "/.complete", "w").close()

if "big" in only and not os.path.exists(big + "/.complete"):
    shutil.rmtree(big, ignore_errors=True)
    os.makedirs(big)
    write_random(big + "/one-GiB.bin", 1 << 30, random.Random(1))
    open(big + "/.complete", "w").close()
EOF
fi

declare -a names paths
for which in $only; do
  case $which in
    real) names+=(real); paths+=("$real") ;;
    synthetic) names+=(synthetic); paths+=("$synthetic/tree") ;;
    big) names+=(big-file); paths+=("$big/one-GiB.bin") ;;
    *) die "NAR_BENCH_ONLY: unknown case $which" ;;
  esac
done

describe() {  # files, directories, symlinks, bytes of regular files
  find "$1" \( -type f -printf 'f %s\n' \) -o \( -type d -printf 'd 0\n' \) -o \( -type l -printf 'l 0\n' \) |
    awk '{n[$1]++; s+=$2} END {printf "%d files, %d directories, %d symlinks, %.1f MB in files", n["f"], n["d"], n["l"], s/1e6}'
}

# ---------------------------------------------------------------------------------------------
warn_if_busy

# Correctness first: the same hash strings, the same dump bytes.
for i in "${!names[@]}"; do
  p=${paths[$i]}
  echo "== ${names[$i]}: $p"
  echo "   $(describe "$p")"
  nix_h=$(nix-hash --type sha256 "$p")
  our_h=$("$ours" hash --type sha256 "$p")
  [ "$nix_h" = "$our_h" ] || die "hash differs on $p: nix-hash $nix_h, nar-tool $our_h"
  nix_h32=$(nix-hash --type sha256 --base32 "$p")
  our_h32=$("$ours" hash --type sha256 --base32 "$p")
  [ "$nix_h32" = "$our_h32" ] || die "base32 hash differs on $p: nix-hash $nix_h32, nar-tool $our_h32"
  cmp <(nix-store --dump "$p") <("$ours" dump "$p") || die "dump differs on $p"
  echo "   identical: sha256 $nix_h, dump bytes (cmp)"
done

# ---------------------------------------------------------------------------------------------
# Wall times: hyperfine, page cache warm. After one warm-up run of each command, each pair is
# timed in $rounds rounds of $runs runs, Nix first in odd rounds and nar-tool first in even ones.
# Before a round the script waits (up to $wait_max s) for both cores to be idle, and after it
# compares the CPU time the whole machine used (/proc/stat) with what the benchmarked commands
# used (hyperfine's user + system): a round during which other work took more than
# $max_other of a core is thrown away and run again (up to 3 times as many rounds in all), so
# the numbers are those of a quiet machine even on a shared one. The table gives the median of
# the kept runs, pooled. Commands run through sh (hyperfine subtracts the shell's start-up).
# `dump >/dev/null` costs the writer nothing (neither Nix nor we special-case /dev/null, unlike
# GNU tar, but nothing is copied out either); `dump | cat >/dev/null` adds the real cost of a
# pipe, the way an archive is usually consumed. Not `| sha256sum`: at ~1 GB/s it would be the
# bottleneck of both and hide the difference.
# Peak memory: GNU time's maximum resident set size (what `/usr/bin/time -v` calls "Maximum
# resident set size") of the tool alone, median of 3 runs.
peak_kb() {  # median max-RSS of the command (in KiB); its stdout goes to the given sink
  local sink=$1; shift
  local vals=()
  for _ in 1 2 3; do
    if [ "$sink" = pipe ]; then
      /usr/bin/time -f %M -o "$work/rss" "$@" | cat >/dev/null
    else
      /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null
    fi
    vals+=("$(tail -n1 "$work/rss")")
  done
  printf '%s\n' "${vals[@]}" | sort -n | sed -n 2p
}
hz=$(getconf CLK_TCK)
max_other=${NAR_BENCH_MAX_OTHER:-0.15}

rows=$work/rows.tsv
: >"$rows"
for i in "${!names[@]}"; do
  name=${names[$i]}
  p=${paths[$i]}
  P=$(q "$p")
  O=$(q "$ours")
  echo "== timing ${name}"
  # op, the two commands for hyperfine (through sh), the sink for peak RSS, the two argvs
  bench() {
    local op=$1 nix_cmd=$2 our_cmd=$3 sink=$4 nix_argv=$5 our_argv=$6
    local base=$work/$name-${op//[^a-z]/_} nix_rss our_rss kept=0 tries=0 dropped=0 jsons=()
    local b0 t0 b1 t1 other worst=0
    sh -c "$nix_cmd" && sh -c "$our_cmd"  # warm-up
    while [ "$kept" -lt "$rounds" ]; do
      tries=$((tries + 1))
      wait_quiet "$wait_max" >/dev/null
      local pair=(-n "nix $op" "$nix_cmd" -n "nar-tool $op" "$our_cmd")
      [ $((tries % 2)) = 0 ] && pair=(-n "nar-tool $op" "$our_cmd" -n "nix $op" "$nix_cmd")
      read -r b0 t0 < <(cpu_ticks)
      hyperfine --style basic --warmup 0 --runs "$runs" --export-json "$base-$tries.json" \
        "${pair[@]}" >"$work/hyperfine.log" 2>&1 ||
        { cat "$work/hyperfine.log"; die "hyperfine failed"; }
      read -r b1 t1 < <(cpu_ticks)
      # Cores' worth of other work during the round: busy time not spent by the commands.
      other=$(python3 -c '
import json, sys
b0, t0, b1, t1, hz, cores = map(float, sys.argv[2:])
ours = sum((r["user"] + r["system"]) * len(r["times"]) for r in json.load(open(sys.argv[1]))["results"])
elapsed = (t1 - t0) / hz / cores
print(f"{max(0.0, ((b1 - b0) / hz - ours) / elapsed):.2f}")' "$base-$tries.json" "$b0" "$t0" "$b1" "$t1" "$hz" "$(nproc)")
      local times
      times=$(awk '/^Benchmark/ {who = $3} /^  Time/ {printf "%s%s %s %s", (n++ ? ", " : ""), who, $5, $6}' "$work/hyperfine.log")
      if awk -v o="$other" -v m="$max_other" 'BEGIN {exit !(o > m)}' && [ "$tries" -lt $((3 * rounds)) ]; then
        dropped=$((dropped + 1))
        echo "   $op: $times — other work took $other core, round dropped"
        continue
      fi
      awk -v o="$other" -v w="$worst" 'BEGIN {exit !(o > w)}' && worst=$other
      kept=$((kept + 1))
      jsons+=("$base-$tries.json")
      echo "   $op, round $kept: $times (other work: $other core)"
    done
    nix_rss=$(eval peak_kb "$sink" "$nix_argv")
    our_rss=$(eval peak_kb "$sink" "$our_argv")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$op" "${jsons[*]}" "$nix_rss" "$our_rss" "$worst" "$dropped" >>"$rows"
  }
  bench "hash" "nix-hash --type sha256 $P >/dev/null" "$O hash --type sha256 $P >/dev/null" \
    null "nix-hash --type sha256 $P" "$O hash --type sha256 $P"
  bench "dump >/dev/null" "nix-store --dump $P >/dev/null" "$O dump $P >/dev/null" \
    null "nix-store --dump $P" "$O dump $P"
  bench "dump | cat" "nix-store --dump $P | cat >/dev/null" "$O dump $P | cat >/dev/null" \
    pipe "nix-store --dump $P" "$O dump $P"
done

# ---------------------------------------------------------------------------------------------
out=$results_dir/core.txt
{
  echo "nar-tool core benchmark, $(date -u +%Y-%m-%dT%H:%MZ), nar-tool $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo '+changes')"
  echo "$(nix-hash --version | head -n1); $(hyperfine --version); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uname -sr)"
  echo "page cache warm; wall time = median of $rounds rounds × $runs runs (hyperfine, alternating order, disturbed rounds dropped); peak RSS = median of 3 (GNU time)"
  echo "load average at the end: $(load)"
  for i in "${!names[@]}"; do echo "${names[$i]}: ${paths[$i]} ($(describe "${paths[$i]}"))"; done
  echo
  python3 - "$rows" <<'EOF'
import json, statistics, sys
targets = {"hash": 0.6, "dump >/dev/null": 1.0, "dump | cat": 1.0}
head = ["tree", "operation", "Nix (s)", "nar-tool (s)", "ours/Nix", "target", "Nix RSS", "ours RSS", "< 32 MiB", "other", "dropped"]
table = []
for line in open(sys.argv[1]):
    name, op, paths, nix_rss, our_rss, other, dropped = line.rstrip("\n").split("\t")
    times = {}
    for path in paths.split():
        for res in json.load(open(path))["results"]:
            times.setdefault(res["command"].split()[0], []).extend(res["times"])
    nix, our = times["nix"], times["nar-tool"]
    med = statistics.median
    ratio = med(our) / med(nix)
    spread = lambda t: f"{med(t):.3f} ± {statistics.stdev(t):.3f}" if len(t) > 1 else f"{med(t):.3f}"
    mib = lambda kb: f"{int(kb) / 1024:.1f} MiB"
    table.append([name, op, spread(nix), spread(our), f"{ratio:.2f}",
                  f"≤ {targets[op]:.1f} {'met' if ratio <= targets[op] else 'MISSED'}",
                  mib(nix_rss), mib(our_rss), "met" if int(our_rss) < 32 * 1024 else "MISSED", other, dropped])
w = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table:
    print(line(r))
print()
print("Nix/nar-tool (s): median ± standard deviation of all runs; ours/Nix: ratio of the medians;")
print("RSS: peak resident memory (median of 3); other: the most other work (in cores) during a kept")
print("round; dropped: rounds run again because other work took more than NAR_BENCH_MAX_OTHER cores.")
EOF
} >"$out"
echo
cat "$out"
echo
echo "(written to ${out#"$root"/})"
