#!/usr/bin/env bash
# Benchmark of `nar-tool fetch` and `nar-tool optimise` against the real Nix (2.8):
#
#   fetch     nar-tool fetch --from CACHE --store-root ROOT --write-db PATHS
#             vs nix copy --from file://CACHE --to local?root=ROOT PATHS
#   optimise  nar-tool optimise --store-root ROOT   vs   nix-store --store local?root=ROOT --optimise
#
# The source: N store paths (default 40) added to a chroot store, each a directory of 400 files
# of 0 B–64 KiB (log-uniform, one in 10 executable) and 20 symlinks, a third of the files the
# same in every path (so optimising has work: `.links` dedup across paths). The cache is
# `nix copy --to file://…?compression=C` of them (C: NAR_BENCH_COMPRESSION, default zstd),
# signed. Before timing, the script checks that our store verifies with Nix, has the same
# trees as Nix's copy, and that both optimisers make the same `.links` and report the same
# saving. Each side runs NAR_BENCH_RUNS (3) times on a fresh root (a fresh copy for optimise),
# in rotated order; the wall time is the median, peak memory GNU time's maximum RSS (median).
# Nothing is deleted before a timed run (earlier roots are moved aside, removed at the end) and
# the disk is synced first: on an ext4 without a journal, creating an inode scans past every
# inode freed in the last minutes of its block group, which made a run after a deletion of the
# previous run's 16 000 files up to 10 times slower, whichever tool ran.
#
#   benches/fetch.sh          # 40 paths
#   benches/fetch.sh 8        # a smoke test of the script
#   TMPDIR=/dev/shm benches/fetch.sh   # on tmpfs: no disk in the way (see the note it prints)
#
# Environment: NAR_TOOL_BIN (a built binary instead of `cargo build --release`), TMPDIR.
# Requires: cargo, python3, Nix 2.8 (nix, nix-store), GNU time at /usr/bin/time.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n=${1:-40}
runs=${NAR_BENCH_RUNS:-3}
compression=${NAR_BENCH_COMPRESSION:-zstd}
need python3 nix nix-store
need_gnu_time
make_work nar-fetch-bench
ours=$(release_bin)
export NIX_REMOTE=local
warn_if_busy
# With `discard`, ext4 without a journal discards a file's blocks as it is freed, synchronously:
# every file `optimise` replaces waits for the disk (both tools alike; see benches/README.md).
if findmnt -n -o OPTIONS -T "$work" 2>/dev/null | tr ',' '\n' | grep -qx discard; then
  echo "== note: $work is on a file system mounted with 'discard': optimise's time is mostly the"
  echo "   disk discarding the blocks of each file replaced; TMPDIR=/dev/shm measures the tools"
fi

echo "== generating $n source paths"
python3 - "$work/src" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
shared_rng = random.Random(7)
shared = [(shared_rng.randbytes(int(2 ** shared_rng.uniform(0, 16))), shared_rng.random() < 0.1)
          for _ in range(133)]
for p in range(n):
    rng = random.Random(p)
    d = f"{root}/p{p}"
    for sub in range(8):
        os.makedirs(f"{d}/dir{sub}")
    for i in range(400):
        data, exe = shared[i] if i < 133 else (rng.randbytes(int(2 ** rng.uniform(0, 16))), rng.random() < 0.1)
        f = f"{d}/dir{i % 8}/f{i}"
        with open(f, "wb") as out:
            out.write(data)
        os.chmod(f, 0o755 if exe else 0o644)
    for i in range(20):
        os.symlink(f"dir{i % 8}/f{i}", f"{d}/link{i}")
PY
mapfile -t paths < <(store_add "$work/store" "$work/src"/p*)
du -sh "$work/src" | sed 's/^/== source size: /'

cd "$work"
pub=$(bench_key "$ours" bench-fetch-1)
$nix3 copy --from "$work/store" --to "file://$work/cache?compression=$compression&secret-key=$work/secret" "${paths[@]}"
du -sh "$work/cache" | sed 's/^/== cache size: /'

fetch_ours() { "$ours" fetch -q --from "$work/cache" --store-root "$1" --trusted-key "$pub" --write-db "${paths[@]}"; }
fetch_nix() {
  $nix3 copy --from "file://$work/cache" --to "local?root=$1" --option trusted-public-keys "$pub" "${paths[@]}" 2>/dev/null
}
optimise_ours() { "$ours" optimise --store-root "$1" 2>&1; }
optimise_nix() { nix-store --store "local?root=$1" --optimise 2>&1; }
facts() { (cd "$1/nix/store" && find . -mindepth 1 -path ./.links -prune -o -printf '%p %y %m %T@ %s %l\n' | sort); }

echo "== checking the outputs agree"
fetch_ours "$work/check-ours"
fetch_nix "$work/check-nix"
nix-store --store "local?root=$work/check-ours" --verify --check-contents 2>&1 | grep -i -E "error|warning" && die "Nix does not verify our store"
cmp <(facts "$work/check-ours") <(facts "$work/check-nix") || die "the stores differ"
cp -a "$work/check-ours" "$work/fetched" # unoptimised, for the optimise runs
saved_ours=$(optimise_ours "$work/check-ours" | grep freed)
saved_nix=$(optimise_nix "$work/check-nix" | grep freed)
[ "$saved_ours" = "$saved_nix" ] || die "savings differ: '$saved_ours' vs '$saved_nix'"
cmp <(ls "$work/check-ours/nix/store/.links") <(ls "$work/check-nix/nix/store/.links") || die ".links differ"
echo "   same trees; both optimisers: $saved_nix"
make_writable() { chmod -R u+w "$1" 2>/dev/null || true; }
mkdir "$work/old"
mv "$work/check-nix" "$work/check-ours" "$work/old/"

declare -A wall rss
measure() { # LABEL COMMAND...: one timed run, recorded
  local label=$1
  shift
  gnu_time "$work/time" "$@" >/dev/null 2>&1
  read -r w _ _ m <"$work/time"
  wall[$label]+="$w "
  rss[$label]+="$m "
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for ((r = 0; r < runs; r++)); do
  for label in $(round_order "$r" fetch-nix fetch-ours optimise-nix optimise-ours); do
    dest="$work/run"
    [ ! -e "$dest" ] || mv "$dest" "$work/old/$r-$label"
    case $label in
    fetch-*) ;;
    optimise-*) cp -a "$work/fetched" "$dest" ;;
    esac
    sync
    case $label in
    fetch-ours)
      measure "$label" "$ours" fetch -q --from "$work/cache" --store-root "$dest" --trusted-key "$pub" \
        --write-db "${paths[@]}"
      ;;
    fetch-nix)
      # shellcheck disable=SC2086 # $nix3 is a command line
      measure "$label" $nix3 copy --from "file://$work/cache" --to "local?root=$dest" \
        --option trusted-public-keys "$pub" "${paths[@]}"
      ;;
    optimise-ours) measure "$label" "$ours" optimise --store-root "$dest" ;;
    optimise-nix) measure "$label" nix-store --store "local?root=$dest" --optimise ;;
    esac
  done
done
make_writable "$work/run"
make_writable "$work/old"

echo "== $n paths, $runs runs each (median wall time, median peak memory)"
for op in fetch optimise; do
  wn=$(echo "${wall[$op-nix]}" | median)
  wo=$(echo "${wall[$op-ours]}" | median)
  mn=$(echo "${rss[$op-nix]}" | median)
  mo=$(echo "${rss[$op-ours]}" | median)
  printf '%-9s Nix %7.2f s %7d KiB   nar-tool %7.2f s %7d KiB   ratio %.2f×\n' \
    "$op" "$wn" "$mn" "$wo" "$mo" "$(awk -v a="$wo" -v b="$wn" 'BEGIN {print (b > 0 ? a / b : 0)}')"
done
