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
#   NAR_BENCH_RUNS   hyperfine runs per command and round (default 5)
#   NAR_BENCH_ROUNDS rounds per pair of commands, alternating which goes first (default 3)
#   NAR_BENCH_WAIT   seconds to wait, before each round, for the cores to be idle (default 120)
#   NAR_BENCH_ONLY   space-separated subset of: real synthetic big (default: all three)
#   NAR_BENCH_QUICK  1: 2 rounds of 2 runs, no waiting (a smoke test of the script itself)
#
# Requires: cargo, nix-hash and nix-store (Nix; NIX_REMOTE=local is set here), hyperfine,
# GNU time at /usr/bin/time, python3 (tree generation and the table), cmp.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export NIX_REMOTE=local
export LC_ALL=C

runs=${NAR_BENCH_RUNS:-5}
rounds=${NAR_BENCH_ROUNDS:-3}
wait_max=${NAR_BENCH_WAIT:-120}
warmup=1
if [ "${NAR_BENCH_QUICK:-0}" = 1 ]; then runs=2; rounds=2; wait_max=0; fi
only=${NAR_BENCH_ONLY:-real synthetic big}
bench_dir=${NAR_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nar-tool-bench}
results_dir=$root/bench-results
mkdir -p "$results_dir" "$bench_dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/nar-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

die() { echo "core.sh: $*" >&2; exit 1; }
for tool in cargo nix-hash nix-store hyperfine python3 cmp; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs Nix and hyperfine)"
done
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing: apt-get install time"

# ---------------------------------------------------------------------------------------------
echo "== cargo build --release"
cargo build --release --quiet --bin nar-tool
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ours=$target_dir/release/nar-tool
[ -x "$ours" ] || die "no binary at $ours"

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
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== load average: $(load) (on $(nproc) cores; measure on a quiet machine)"
busy=$(awk -v n="$(nproc)" '{print ($1 > 0.5 * n) ? 1 : 0}' /proc/loadavg)
[ "$busy" = 1 ] && echo "core.sh: warning: the machine is busy, numbers will be noisy" >&2

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
# Wall times: hyperfine, page cache warm (warmup runs first). Each pair is timed in $rounds
# rounds of $runs runs, Nix first in odd rounds and nar-tool first in even ones, after waiting
# (up to $wait_max s) for both cores to be idle; the table gives the median of all runs pooled,
# so a burst of other work hits both sides alike. Commands run through sh (hyperfine subtracts
# the shell's start-up). `dump >/dev/null` costs the writer nothing (neither Nix nor we
# special-case /dev/null, unlike GNU tar, but nothing is copied out either); `dump | cat
# >/dev/null` adds the real cost of a pipe, the way an archive is usually consumed. Not
# `| sha256sum`: at ~1 GB/s it would be the bottleneck of both and hide the difference.
# Peak memory: GNU time's maximum resident set size (what `/usr/bin/time -v` calls "Maximum
# resident set size") of the tool alone, median of 3 runs.
q() { printf '%q' "$1"; }
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
cpu_busy() {  # percent of both cores busy over the next second
  local a b
  read -r -a a </proc/stat
  sleep 1
  read -r -a b </proc/stat
  local busy=0 total=0 i
  for i in 1 2 3 4 5 6 7 8; do
    total=$((total + b[i] - a[i]))
    [ "$i" = 4 ] || [ "$i" = 5 ] || busy=$((busy + b[i] - a[i]))
  done
  echo $((100 * busy / (total > 0 ? total : 1)))
}
wait_quiet() {  # waits until the cores are ≤ 10 % busy (at most $wait_max s); prints the last busy %
  local t0=$SECONDS b
  while :; do
    b=$(cpu_busy)
    if [ "$b" -le 10 ] || [ $((SECONDS - t0)) -ge "$wait_max" ]; then echo "$b"; return; fi
    sleep 4
  done
}

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
    local base=$work/$name-${op//[^a-z]/_} nix_rss our_rss r busy busiest=0 jsons=()
    for r in $(seq 1 "$rounds"); do
      busy=$(wait_quiet)
      [ "$busy" -gt "$busiest" ] && busiest=$busy
      local pair=(-n "nix $op" "$nix_cmd" -n "nar-tool $op" "$our_cmd")
      [ $((r % 2)) = 0 ] && pair=(-n "nar-tool $op" "$our_cmd" -n "nix $op" "$nix_cmd")
      hyperfine --style basic --warmup "$warmup" --runs "$runs" --export-json "$base-$r.json" \
        "${pair[@]}" >"$work/hyperfine.log" 2>&1 ||
        { cat "$work/hyperfine.log"; die "hyperfine failed"; }
      jsons+=("$base-$r.json")
      echo "   $op, round $r (cores $busy % busy before):" \
        "$(awk '/^Benchmark/ {who = $3} /^  Time/ {printf "%s%s %s %s", (n++ ? ", " : ""), who, $5, $6}' "$work/hyperfine.log")"
    done
    nix_rss=$(eval peak_kb "$sink" "$nix_argv")
    our_rss=$(eval peak_kb "$sink" "$our_argv")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$op" "${jsons[*]}" "$nix_rss" "$our_rss" "$busiest" >>"$rows"
  }
  bench "hash" "nix-hash --type sha256 $P" "$O hash --type sha256 $P" \
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
  echo "page cache warm; wall time = median of $rounds rounds × $runs runs (hyperfine, alternating order); peak RSS = median of 3 (GNU time)"
  echo "load average at the end: $(load)"
  for i in "${!names[@]}"; do echo "${names[$i]}: ${paths[$i]} ($(describe "${paths[$i]}"))"; done
  echo
  python3 - "$rows" <<'EOF'
import json, statistics, sys
targets = {"hash": 0.6, "dump >/dev/null": 1.0, "dump | cat": 1.0}
head = ["tree", "operation", "Nix (s)", "nar-tool (s)", "ours/Nix", "target", "Nix RSS", "ours RSS", "< 32 MiB", "busy"]
table = []
for line in open(sys.argv[1]):
    name, op, paths, nix_rss, our_rss, busy = line.rstrip("\n").split("\t")
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
                  mib(nix_rss), mib(our_rss), "met" if int(our_rss) < 32 * 1024 else "MISSED", f"{busy} %"])
w = [max(len(r[i]) for r in [head] + table) for i in range(len(head))]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table:
    print(line(r))
print()
print("Nix/nar-tool (s): median ± standard deviation of all runs; ours/Nix: ratio of the medians;")
print("RSS: peak resident memory; busy: the most the cores were busy (other work) before a round.")
EOF
} >"$out"
echo
cat "$out"
echo
echo "(written to ${out#"$root"/})"
