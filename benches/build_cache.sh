#!/usr/bin/env bash
# Benchmark of `nar-tool build-cache` against `nix copy --to file://DIR?compression=C`: the same
# store paths from the same store (/nix/store, read through the default DB
# /nix/var/nix/db/db.sqlite), for (a) a real tree of ~50 MB or more, (b) a generated tree of many
# small files, (c) many small store paths (NAR_BENCH_SMALL_PATHS generated paths of 3 small files
# each, in a chroot store of their own: the tools read them from there, Nix with `nix copy
# --from STORE`, nar-tool with `--store-root STORE --paths-from LIST`) and (d) a memory probe (a
# generated path of NAR_BENCH_BIG_MB MiB, one run, zstd).
# For zstd and xz: wall time (GNU time, in interleaved rounds whose order alternates; the target
# directory is removed before every run), CPU time, size of nar/ (du -sb), peak RSS, and the
# ratios ours/Nix's.
# A benchmark, not a test: run it on demand, on a quiet machine. See benches/README.md.
#
#   benches/build_cache.sh [REAL_TREE]
#   benches/build_cache.sh CASE...      only these cases: real small-files small-paths big
#                                       (e.g. `benches/build_cache.sh small-paths`)
#
# Environment:
#   NAR_BENCH_REAL         the real tree (default: the first argument, else the largest
#                          /usr/lib/python3*, else the stable Rust toolchain's lib/rustlib)
#   NAR_BENCH_RUNS         rounds per order (default 2: 2 rounds with ours first and 2 with Nix
#                          first, so 4 runs each; xz on ~50 MB takes a while)
#   NAR_BENCH_SMALL_FILES  files in the many-small-files tree (default 20000)
#   NAR_BENCH_SMALL_PATHS  store paths of the many-small-paths case (default 2000)
#   NAR_BENCH_BIG_MB       size of the memory probe's path in MiB (default 256; 0 to skip)
#   NAR_BENCH_METHODS      compressions (default "zstd xz")
#   NAR_BENCH_ONLY         space-separated subset of: real small-files small-paths big (default:
#                          all; CASE arguments replace it)
#   NAR_BENCH_JOBS         --jobs for nar-tool (default: its own, the number of cores)
#   NAR_BENCH_WAIT         seconds to wait, before each order of each pair, for the cores to be
#                          idle (≤ 10 % busy; default 60); the table shows how busy they still were
#
# Requires: cargo, nix and nix-store (Nix; NIX_REMOTE=local is set here, run as a user who may
# write /nix), GNU time at /usr/bin/time, python3.
# Writes bench-results/build_cache.txt (the table) and bench-results/build_cache.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export NIX_REMOTE=local

cases="real small-files small-paths big"
runs=${NAR_BENCH_RUNS:-2}
small_files=${NAR_BENCH_SMALL_FILES:-20000}
small_paths=${NAR_BENCH_SMALL_PATHS:-2000}
big_mb=${NAR_BENCH_BIG_MB:-256}
methods=${NAR_BENCH_METHODS:-zstd xz}
real=${NAR_BENCH_REAL:-}
picked=
for arg in "$@"; do
  case " $cases " in
    *" $arg "*) picked+=" $arg" ;;
    *) real=$arg ;;
  esac
done
only=${picked:-${NAR_BENCH_ONLY:-$cases}}
wait_max=${NAR_BENCH_WAIT:-60}
wanted() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
jobs_arg=()
if [ -n "${NAR_BENCH_JOBS:-}" ]; then jobs_arg=(--jobs "$NAR_BENCH_JOBS"); fi

need cargo nix nix-store python3
need_gnu_time
[ -f /nix/var/nix/db/db.sqlite ] || die "no Nix DB at /nix/var/nix/db/db.sqlite"

results_dir=$root/bench-results
mkdir -p "$results_dir"
make_work build-cache-bench
# Nix remembers what a binary cache holds (~/.cache/nix/binary-cache-v*.sqlite): a removed
# target would look complete to the next `nix copy`. Give it a cache of its own, wiped before
# every run.
export XDG_CACHE_HOME=$work/xdg

bin=$(release_bin)

# --- the trees, added to the store --------------------------------------------------------------
if [ -z "$real" ]; then
  real=$(du -s /usr/lib/python3* 2>/dev/null | sort -rn | head -1 | cut -f2 || true)
  if [ -z "$real" ]; then
    real=$(ls -d "$HOME"/.rustup/toolchains/stable-*/lib/rustlib 2>/dev/null | head -1 || true)
  fi
fi
[ -n "$real" ] && [ -d "$real" ] || die "no real tree found; pass one as an argument"

gen=$work/gen
mkdir -p "$gen"
python3 - "$gen" "$small_files" "$big_mb" "$real" "$only" "$small_paths" <<'EOF'
import os, random, sys
out, count, big_mb, real = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
only, path_count = sys.argv[5].split(), int(sys.argv[6])
rng = random.Random(20240601)
# Contents are consecutive slices of the real tree's text files (sorted walk, up to 64 MiB,
# wrapping around if the tree has less), so they compress like source code does: a word salad
# would be pathological for xz's match finder, and slices re-drawn at random from a small pool
# would repeat far more than a real tree does.
pool, size = [], 0
for d, dirs, files in sorted(os.walk(real)):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        if size < (64 << 20) and os.path.isfile(p) and not os.path.islink(p) and f.endswith((".py", ".txt", ".rst", ".h", ".c", ".md", ".json", ".toml", ".html")):
            data = open(p, "rb").read()
            pool.append(data)
            size += len(data)
pool = b"".join(pool) or bytes(range(256)) * 4096
cursor = 0
def text(n):
    global cursor
    if cursor + n > len(pool):
        cursor = 0
    out = (pool[cursor:cursor + n] * (1 + n // len(pool)))[:n]
    cursor += n
    return out
# (b) many small files: ~100 per directory, sizes 0..~8 KiB (mostly small), some executables,
# symlinks, a few binary (random) files.
small = os.path.join(out, "small-files")
for i in range(count if "small-files" in only else 0):
    d = os.path.join(small, "d%03d" % (i // 100 // 10), "s%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    n = int(min(8192, rng.lognormvariate(6.5, 1.2)))
    p = os.path.join(d, "f%05d.rs" % i)
    with open(p, "wb") as f:
        f.write(text(n) if rng.random() < 0.95 else rng.randbytes(n))
    if i % 17 == 0:
        os.chmod(p, 0o755)
    if i % 97 == 0:
        os.symlink("f%05d.rs" % i, os.path.join(d, "l%05d" % i))
# (c) the memory probe: one big file, half text, half random, in 1 MiB pieces.
if big_mb > 0 and "big" in only:
    big = os.path.join(out, "big")
    os.makedirs(big)
    with open(os.path.join(big, "blob"), "wb") as f:
        block = text(1 << 20)
        for i in range(big_mb):
            f.write(block if i % 2 == 0 else rng.randbytes(1 << 20))
# (d) many small store paths, each of 3 small text files (~0.7 KB typical, at most 4 KiB; one
# executable), every one a different slice of the pool, so no two NARs are the same; the same
# paths whichever other cases were generated.
rng, cursor = random.Random(20240602), 0
for i in range(path_count if "small-paths" in only else 0):
    p = os.path.join(out, "small-paths", "sp-%04d" % i)
    for sub, name in (("bin", "sp-%04d" % i), ("lib", "data.txt"), ("share/doc", "README")):
        os.makedirs(os.path.join(p, sub), exist_ok=True)
        with open(os.path.join(p, sub, name), "wb") as f:
            f.write(text(int(min(4096, rng.lognormvariate(6.5, 0.8)))))
    os.chmod(os.path.join(p, "bin", "sp-%04d" % i), 0o755)
EOF

echo "== adding the trees to /nix/store, the small paths to a chroot store" >&2
if wanted real; then nix-store --add "$real" >"$work/real.list"; fi
if wanted small-files; then nix-store --add "$gen/small-files" >"$work/small-files.list"; fi
if wanted big && [ "$big_mb" -gt 0 ]; then nix-store --add "$gen/big" >"$work/big.list"; fi
small_store=$work/store
if wanted small-paths; then store_add "$small_store" "$gen"/small-paths/* >"$work/small-paths.list"; fi
rm -rf "$gen"

rows=$work/rows.tsv
: > "$rows"
measure() { # label method runs list [store]: the paths listed in LIST, from the chroot store
  # STORE (else /nix/store)
  local label=$1 method=$2 n=$3 list=$4 store=${5:-}
  local ours=$work/ours nixd=$work/nix
  local paths nar_size
  mapfile -t paths <"$list"
  nar_size=$($nix3 path-info --json ${store:+--store "$store"} "${paths[@]}" \
    | python3 -c 'import json,sys; print(sum(p["narSize"] for p in json.load(sys.stdin)))')
  echo "== $label (${#paths[@]} path(s): ${paths[0]}..., NAR $nar_size bytes), $method" >&2
  # Warm the page cache once.
  find "${paths[@]/#/$store}" -type f -exec cat {} + >/dev/null
  local ours_cmd="$bin build-cache --quiet ${jobs_arg[*]} --to $ours --compression $method"
  if [ -n "$store" ]; then ours_cmd+=" --store-root $store --paths-from $list"; else ours_cmd+=" ${paths[*]}"; fi
  local nix_cmd
  nix_cmd="$(nix_copy_cmd "$nixd" "$method" "$store") ${paths[*]}"
  local runs_file=$work/$label-$method.runs
  : > "$runs_file"
  local busy b i who
  busy=$(wait_quiet "$wait_max")
  # Interleaved rounds, the order alternating (ours first, then Nix first, ...): slow drifts of a
  # shared machine's speed then fall on both alike, and each round's pair gives one ratio.
  # The targets are removed before every run; the last run of each leaves the caches measured.
  for ((i = 1; i <= 2 * n; i++)); do
    for who in $(round_order "$i" nix ours); do
      rm -rf "$ours" "$nixd" "$XDG_CACHE_HOME"
      if [ "$who" = ours ]; then
        gnu_time "$work/t" $ours_cmd
      else
        gnu_time "$work/t" $nix_cmd 2>/dev/null
      fi
      printf '%s\t%s\t%s\n' "$i" "$who" "$(cat "$work/t")" >> "$runs_file"
    done
    if [ "$i" = "$n" ]; then
      b=$(wait_quiet "$wait_max")
      [ "$b" -gt "$busy" ] && busy=$b
    fi
  done
  # The last round left only the second command's cache: one more run of the other.
  if [ -z "$(ls "$ours" 2>/dev/null | grep -m1 '\.narinfo$' || true)" ]; then $ours_cmd; fi
  if [ -z "$(ls "$nixd" 2>/dev/null | grep -m1 '\.narinfo$' || true)" ]; then $nix_cmd 2>/dev/null; fi
  # Both must have produced every path, with the same NARs.
  local a b
  a=$(cat "$ours"/*.narinfo | grep '^NarHash' | sort)
  b=$(cat "$nixd"/*.narinfo | grep '^NarHash' | sort)
  [ "$(wc -l <<<"$a")" = "${#paths[@]}" ] || die "$label $method: $(wc -l <<<"$a") narinfos, not ${#paths[@]}"
  [ "$a" = "$b" ] || die "$label $method: different NarHashes, ours and Nix's"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$method" "${#paths[@]}" "$nar_size" \
    "$(du -sb "$ours/nar" | cut -f1)" "$(du -sb "$nixd/nar" | cut -f1)" "$runs_file" "$busy" >> "$rows"
}

for method in $methods; do
  if wanted real; then measure real "$method" "$runs" "$work/real.list"; fi
  if wanted small-files; then measure small-files "$method" "$runs" "$work/small-files.list"; fi
  if wanted small-paths; then measure small-paths "$method" "$runs" "$work/small-paths.list" "$small_store"; fi
done
if [ -s "$work/big.list" ]; then
  measure "big-${big_mb}MiB" zstd 1 "$work/big.list"
fi

python3 - "$rows" "$results_dir" "$real" "$(nproc)" "$(cat /proc/loadavg)" "$("$bin" --version 2>/dev/null || echo nar-tool)" "$(nix --version)" <<'EOF'
import json, os, statistics, sys, time
rows_path, results_dir, real, cores, loadavg, ours_version, nix_version = sys.argv[1:8]
rows = []
for line in open(rows_path):
    label, method, paths, nar, size_o, size_n, runs_file, busy = line.rstrip("\n").split("\t")
    r = dict(tree=label, method=method, paths=int(paths), nar_bytes=int(nar), size_ours=int(size_o),
             size_nix=int(size_n), busy=int(busy))
    runs = {}  # round -> who -> (wall, cpu, rss KiB)
    for l in open(runs_file):
        rnd, who, wall, user, sys_, rss = l.split()
        runs.setdefault(rnd, {})[who] = (float(wall), float(user) + float(sys_), int(rss))
    for who in ("ours", "nix"):
        walls = [x[who][0] for x in runs.values()]
        r[f"wall_{who}"] = statistics.median(walls)
        r[f"wall_{who}_min"] = min(walls)
        r[f"cpu_{who}"] = statistics.median(x[who][1] for x in runs.values())
        r[f"rss_{who}_kb"] = max(x[who][2] for x in runs.values())
    r["rounds"] = len(runs)
    r["paired_ratio"] = statistics.median(x["ours"][0] / x["nix"][0] for x in runs.values())
    rows.append(r)

targets = {"zstd": (0.5, 1.0), "xz": (0.5, 1.02)}
mib = lambda b: b / (1 << 20)
lines = []
lines.append(f"build-cache vs nix copy --to file://  ({time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, "
             f"load avg at the end: {loadavg.split()[0]} {loadavg.split()[1]} {loadavg.split()[2]})")
lines.append(f"{ours_version}; {nix_version}; real tree: {real}")
lines.append("")
hdr = (f"{'tree':<14} {'comp':<5} {'paths':>5} {'NAR MiB':>8} {'busy':>5} | {'wall ours':>9} {'wall Nix':>9} {'ratio':>6} {'(min)':>6} {'runs':>4} | "
       f"{'CPU ours':>8} {'CPU Nix':>8} | {'size ours':>10} {'size Nix':>10} {'ratio':>6} | "
       f"{'RSS ours':>9} {'RSS Nix':>9} | target")
lines.append(hdr)
lines.append("-" * len(hdr))
met_all = True
for r in rows:
    wr = r["paired_ratio"]
    wmin = r["wall_ours_min"] / r["wall_nix_min"]
    sr = r["size_ours"] / r["size_nix"]
    t = targets.get(r["method"])
    if r["tree"].startswith("big"):
        verdict = "memory probe"
    elif t:
        ok = wr <= t[0] and sr <= t[1]
        met_all &= ok
        verdict = ("MET" if ok else "missed") + f" (≤{t[0]}× time, ≤{t[1]}× size)"
    else:
        verdict = ""
    lines.append(
        f"{r['tree']:<14} {r['method']:<5} {r['paths']:>5} {mib(r['nar_bytes']):>8.1f} {r['busy']:>4}% | "
        f"{r['wall_ours']:>8.2f}s {r['wall_nix']:>8.2f}s "
        f"{wr:>5.2f}× {wmin:>5.2f}× {r['rounds']:>4} | {r['cpu_ours']:>7.2f}s {r['cpu_nix']:>7.2f}s | "
        f"{mib(r['size_ours']):>8.2f}Mi {mib(r['size_nix']):>8.2f}Mi {sr:>5.3f}× | "
        f"{r['rss_ours_kb']/1024:>7.1f}Mi {r['rss_nix_kb']/1024:>7.1f}Mi | {verdict}")
lines.append("")
lines.append("wall: median over interleaved rounds (order alternating); ratio: median of the rounds' ours/Nix")
lines.append("ratios; (min): fastest over fastest; runs: rounds; CPU: median user+system;")
lines.append("busy: how busy the cores were (other work) just before the pair's runs, at most (the script waits")
lines.append(f"up to NAR_BENCH_WAIT s for <= 10 %); above that, the other work competes for the cores.")
lines.append("size: du -sb of nar/; RSS: GNU time's maximum resident set size, the largest of the runs.")
text = "\n".join(lines) + "\n"
print(text)
open(os.path.join(results_dir, "build_cache.txt"), "w").write(text)
json.dump(rows, open(os.path.join(results_dir, "build_cache.json"), "w"), indent=1)
EOF
