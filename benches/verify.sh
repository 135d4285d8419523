#!/usr/bin/env bash
# Benchmark of `nar-tool verify` against `nix store verify --store file://DIR --all` (Nix 2.8)
# and against a floor — decompressing and hashing every NAR file and nothing else:
# `xz -dc F | sha256sum` / `zstd -dc F | sha256sum` (as asked; coreutils' sha256sum is slow here,
# ~0.15-0.5 GB/s) and the same through `openssl dgst -sha256` (SHA-NI, ~1 GB/s: the real floor),
# every file, with one pipeline per core (xargs -P).
#
# Caches, each signed, checked with the key trusted, built once and kept:
#   big-xz, big-zstd      one store path of ~350 MB of NAR (a real tree: by default the stable
#                         Rust toolchain's lib/rustlib and bin)
#   small-xz, small-zstd  1000 store paths of ~50 KB (3 real files each, from its docs)
# The store paths are added with `nix-store --store DIR/store --add` (a chroot store of their
# own, nothing lands in /nix/store) and the caches written by `nar-tool build-cache --store-root
# DIR/store --sign`. (xz files are then multi-block, 24 MiB blocks; neither verifier decodes xz
# on several threads, so this favours no one.)
#
# What each side checks: Nix 2.8 — narinfo parse, signature, NAR hash. nar-tool — all that, and
# nix-cache-info, URLs, FileSize, FileHash, the NAR's structure, NarSize, references, orphans.
# Both check paths in parallel (one per core). nar-tool also splits one large NAR over two threads
# (decompression | hashing and parsing) — but only when a core is free: not when the machine's
# 1-minute load average + 1 exceeds the cores, so on a busy machine it runs as a single thread.
#
# A benchmark, not a test: run it on demand, on a quiet machine. See benches/README.md.
#
#   benches/verify.sh
#
# Environment:
#   NAR_BENCH_DIR       where the datasets live (default ${XDG_CACHE_HOME:-~/.cache}/nar-tool-bench;
#                       this script uses its verify/ subdirectory, ~1.6 GB)
#   NAR_BENCH_BIG_TREE  the tree to add as the large path (default: see above, else
#                       /usr/lib/x86_64-linux-gnu or /usr/lib)
#   NAR_BENCH_RUNS      timed runs per command, interleaved (default 5; 2 with NAR_BENCH_QUICK=1)
#   NAR_BENCH_ONLY      subset of: big-xz big-zstd small-xz small-zstd (default: all)
#   NAR_BENCH_RT        1: also time every command under `chrt -f 10` (SCHED_FIFO; root only),
#                       which gives it the cores before the machine's other work: a quiet machine
#                       on a shared one. There nar-tool is told the machine is quiet
#                       (NAR_TOOL_VERIFY_PIPELINE=1), as its load test would find on a quiet one.
#
# Requires: cargo, nix and nix-store (NIX_REMOTE=local is set here), GNU time at /usr/bin/time,
# python3, xz, zstd, sha256sum, xargs; openssl (optional floor).
# Writes bench-results/verify.txt (the table) and bench-results/verify.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export NIX_REMOTE=local

runs=${NAR_BENCH_RUNS:-5}
if [ "${NAR_BENCH_QUICK:-0}" = 1 ]; then runs=2; fi
only=${NAR_BENCH_ONLY:-big-xz big-zstd small-xz small-zstd}
bench_dir=${NAR_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nar-tool-bench}/verify
results_dir=$root/bench-results
mkdir -p "$results_dir" "$bench_dir"
make_work nar-verify-bench

need cargo nix nix-store python3 xz zstd sha256sum xargs
need_gnu_time
have_openssl=0
command -v openssl >/dev/null && have_openssl=1

ours=$(release_bin)

# ---------------------------------------------------------------------------------------------
# The datasets (built once; delete $bench_dir to rebuild).
store=$bench_dir/store
cd "$bench_dir"
if [ ! -e secret ]; then
  nix-store --generate-binary-cache-key nar-tool-bench-1 secret.tmp public.tmp
  mv public.tmp public && mv secret.tmp secret
fi
key=$(cat public)

pick_big() {
  if [ -n "${NAR_BENCH_BIG_TREE:-}" ]; then echo "$NAR_BENCH_BIG_TREE"; return; fi
  local t
  for t in "$HOME"/.rustup/toolchains/stable-*/; do
    [ -d "$t/lib/rustlib" ] && { echo "${t%/}"; return; }
  done
  for t in /usr/lib/x86_64-linux-gnu /usr/lib; do [ -d "$t" ] && { echo "$t"; return; }; done
  die "no tree for the large path; set NAR_BENCH_BIG_TREE"
}
if [ ! -s big-path ]; then
  src=$(pick_big)
  echo "== the large path: from $src"
  rm -rf big-src && mkdir big-src
  if [ -d "$src/lib/rustlib" ]; then
    cp -r "$src/lib/rustlib" "$src/bin" big-src/
  else
    cp -r "$src" big-src/tree
  fi
  store_add "$store" big-src >big-path.tmp && mv big-path.tmp big-path
fi
if [ ! -s small-paths ]; then
  echo "== the 1000 small paths"
  rm -rf small-src
  python3 - "$(pick_big)" <<'EOF'
import os, shutil, sys
base = sys.argv[1]
roots = [os.path.join(base, "share/doc"), base, "/usr/share/doc", "/usr/share"]
files = []
for src in roots:
    for d, _, fs in sorted(os.walk(src)):
        for f in sorted(fs):
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p) and 2000 < os.path.getsize(p) < 60000:
                files.append(p)
                if len(files) == 3000:
                    break
        if len(files) == 3000:
            break
    if len(files) == 3000:
        break
assert len(files) == 3000, f"only {len(files)} files of 2-60 kB found"
for i in range(1000):
    out = f"small-src/p{i:04d}/share"
    os.makedirs(out)
    for j, p in enumerate(files[3 * i:3 * i + 3]):
        shutil.copy(p, f"{out}/{j}-{os.path.basename(p)}")
EOF
  store_add "$store" small-src/* >small-paths.tmp && mv small-paths.tmp small-paths
fi
for c in xz zstd; do
  if [ ! -e "big-$c/.complete" ]; then
    echo "== building big-$c (xz takes minutes)"
    rm -rf "big-$c"
    "$ours" build-cache -q --store-root "$store" --to "big-$c" --compression "$c" --sign secret "$(cat big-path)"
    touch "big-$c/.complete"
  fi
  if [ ! -e "small-$c/.complete" ]; then
    echo "== building small-$c"
    rm -rf "small-$c"
    "$ours" build-cache -q --store-root "$store" --to "small-$c" --compression "$c" --sign secret --paths-from small-paths
    touch "small-$c/.complete"
  fi
done
cd "$root"

# ---------------------------------------------------------------------------------------------
warn_if_busy

O=$(q "$ours")
K=$(q "$key")
runs_tsv=$work/runs.tsv
meta=$work/meta.tsv
: >"$runs_tsv"
: >"$meta"
modes=normal
if [ "${NAR_BENCH_RT:-0}" = 1 ]; then
  command -v chrt >/dev/null || die "NAR_BENCH_RT=1 needs chrt"
  [ "$(id -u)" = 0 ] || die "NAR_BENCH_RT=1 needs root (SCHED_FIFO)"
  modes="normal rt"
fi
# One timed run: wall, user, sys (s) and peak RSS (KiB; of the largest process) of a command.
timed() {  # mode cache label command
  local prefix=()
  [ "$1" = rt ] && prefix=(env NAR_TOOL_VERIFY_PIPELINE=1 chrt -f 10)
  gnu_time "$work/time" "${prefix[@]}" sh -c "$4" >/dev/null 2>&1 ||
    die "$3 failed on $2: $4"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(tail -n1 "$work/time" | tr ' ' '\t')" >>"$runs_tsv"
}
for mode in $modes; do
for name in $only; do
  dir=$bench_dir/$name
  [ -d "$dir" ] || die "no cache $dir"
  D=$(q "$dir")
  case $name in *-xz) dec="xz -dc" ;; *-zstd) dec="zstd -dc" ;; esac
  declare -A cmd=(
    [ours]="$O verify $D --trusted-key $K -q"
    [nix]="$nix3 store verify --store file://$D --all --option trusted-public-keys $K --option substituters ''"
    [floor-sha256sum]="find $D/nar -type f -print0 | xargs -0 -P $(nproc) -n 16 sh -c 'for f; do $dec \"\$f\" | sha256sum; done' _"
  )
  labels=(ours nix floor-sha256sum)
  if [ "$have_openssl" = 1 ]; then
    cmd[floor-openssl]="find $D/nar -type f -print0 | xargs -0 -P $(nproc) -n 16 sh -c 'for f; do $dec \"\$f\" | openssl dgst -sha256; done' _"
    labels+=(floor-openssl)
  fi

  # Correctness first: both verifiers find the cache good.
  sh -c "${cmd[ours]}" >/dev/null || die "nar-tool verify fails on $dir"
  sh -c "${cmd[nix]}" 2>/dev/null || die "nix store verify fails on $dir"
  files=$(find "$dir/nar" -type f | wc -l)
  file_bytes=$(du -sb "$dir/nar" | cut -f1)
  nar_bytes=$(cat "$dir"/*.narinfo | awk '/^NarSize:/ {s += $2} END {print s}')
  paths=$(find "$dir" -maxdepth 1 -name '*.narinfo' | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$name" "$paths" "$files" "$file_bytes" "$nar_bytes" >>"$meta"
  echo "== $name ($mode): $paths paths, $files NAR files of $file_bytes bytes, $nar_bytes bytes of NAR"

  # Page cache warm (one run of each first), then $runs rounds, the order rotating each round
  # so that a burst of other work on the machine falls on every command alike.
  for l in "${labels[@]}"; do sh -c "${cmd[$l]}" >/dev/null 2>&1; done
  for r in $(seq 1 "$runs"); do
    for l in $(round_order "$r" "${labels[@]}"); do
      timed "$mode" "$name" "$l" "${cmd[$l]}"
    done
    echo "   round $r/$runs: $(awk -v m="$mode" -v c="$name" -F'\t' '$1 == m && $2 == c {k[$3] = $4} END {for (l in k) printf "%s %ss  ", l, k[l]}' "$runs_tsv")(load $(load))"
  done
  unset cmd
done
done

# ---------------------------------------------------------------------------------------------
python3 - "$runs_tsv" "$meta" "$results_dir/verify.txt" "$results_dir/verify.json" "$(load)" \
  "$(nproc)" "$(nix --version)" "$("$ours" --version)" "$runs" <<'EOF'
import json, statistics, sys, datetime
runs_path, meta_path, txt_path, json_path, load, ncores, nix_version, our_version, nruns = sys.argv[1:10]
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
runs = {}
for line in open(runs_path):
    mode, cache, label, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    runs.setdefault((mode, cache), {}).setdefault(label, []).append(
        (float(wall), float(user) + float(sys_), int(rss)))
doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu,
       "cores": int(ncores), "load_after": load, "nix": nix_version, "ours": our_version,
       "runs": int(nruns), "caches": []}
out = [f"{'cache':<16} {'paths':>5} {'ours s':>7} {'nix s':>7} {'floor s':>7} {'ossl s':>7} "
       f"{'ours/nix':>8} {'/floor':>6} {'/ossl':>6} {'cpu ours':>8} {'cpu nix':>7} "
       f"{'RSS ours':>8} {'RSS nix':>7} {'RSS floor':>9}"]
for line in open(meta_path):
    mode, name, paths, files, fbytes, nbytes = line.rstrip("\n").split("\t")
    r = runs[(mode, name)]
    label = name if mode == "normal" else f"{name} (rt)"
    nan = float("nan")
    med = lambda l, i=0: statistics.median(x[i] for x in r[l]) if l in r else nan
    mean_cpu = lambda l: statistics.mean(x[1] for x in r[l]) if l in r else nan
    mib = lambda l: f"{med(l, 2) / 1024:.0f} MiB" if l in r else "?"
    o, n, f, s = med("ours"), med("nix"), med("floor-sha256sum"), med("floor-openssl")
    out.append(f"{label:<16} {paths:>5} {o:7.2f} {n:7.2f} {f:7.2f} {s:7.2f} {o / n:8.2f} {o / f:6.2f} "
               f"{o / s:6.2f} {mean_cpu('ours'):8.2f} {mean_cpu('nix'):7.2f} "
               f"{mib('ours'):>8} {mib('nix'):>7} {mib('floor-sha256sum'):>9}")
    doc["caches"].append({
        "cache": name, "mode": mode, "paths": int(paths), "files": int(files), "file_bytes": int(fbytes),
        "nar_bytes": int(nbytes), "runs": r,
        "median_wall_s": {l: med(l) for l in r}, "mean_cpu_s": {l: mean_cpu(l) for l in r},
        "median_max_rss_kib": {l: med(l, 2) for l in r},
        "ratio_ours_nix": o / n, "ratio_ours_floor": o / f, "ratio_ours_floor_openssl": o / s})
out += ["",
        f"median wall seconds of {nruns} interleaved runs (page cache warm); cpu = mean user+sys s;",
        "floor = xz/zstd -dc | sha256sum per NAR file, ossl = the same with openssl dgst -sha256,",
        "one pipeline per core (xargs -P); RSS = median peak RSS (GNU time; floors: largest process).",
        "(rt): every command under chrt -f 10 (a quiet machine on a busy one), nar-tool told so.",
        f"{cpu}, {ncores} cores, load average after: {load}. {our_version}; {nix_version}."]
text = "\n".join(out) + "\n"
open(txt_path, "w").write(text)
json.dump(doc, open(json_path, "w"), indent=1)
print(text)
EOF
echo "== written: bench-results/verify.txt, bench-results/verify.json"
