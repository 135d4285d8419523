#!/usr/bin/env bash
# Benchmark of object storage: `nar-tool build-cache --to s3://…` against `--to DIR` on the same
# paths, and `nar-tool verify s3://…` against `verify DIR`, with a real S3 server (SeaweedFS,
# started here on loopback by scripts/s3-server.sh and stopped at the end). Nix 2.8 in Debian has
# no S3 support, so the directory is the peer: the target is the bucket at ≤ 1.5× the
# directory's time, and peak memory under 100 MiB while a 1 GiB NAR is uploaded.
#
# Cases (store paths added to a chroot store of their own with `nix-store --store DIR --add`):
#   real        one path: the largest /usr/lib/python3* (or NAR_BENCH_REAL)
#   small-paths NAR_BENCH_SMALL_PATHS (500) paths of 3 small text files
#   big         one path of NAR_BENCH_BIG_MB (1024) MiB, half text, half random (memory probe,
#               one run, compression none: every byte goes up)
#
# After the small paths, the server's floor: a plain client (examples/s3_floor.rs, the
# object_store crate alone) making the requests a build of them cannot do without (a NAR and a
# narinfo PUT a path; again create-if-absent, as a build commits them) and those of a verify (a
# narinfo and a NAR GET a path), of the same sizes, 16 at a time. After the big path, its floor:
# one multipart upload of as many bytes with the same client (8 MiB parts, 3 in flight, as a
# build sends them).
#
#   benches/s3.sh                      all cases
#   NAR_BENCH_RUNS=1 benches/s3.sh real
#
# Each pair runs NAR_BENCH_RUNS (3) rounds, the order alternating; the table shows medians, the
# median of the rounds' bucket/directory ratios, and GNU time's peak RSS. Every build starts
# empty: the directory is removed, the bucket gets a prefix of its own (@RUN@ in the command).
# Results: bench-results/s3.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need nix-store python3 curl bc
need_gnu_time
bin=$(release_bin)
# The server's floor: a plain object_store client making the requests of the small paths.
cargo build --release --quiet --example s3_floor
floor=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/s3_floor
runs=${NAR_BENCH_RUNS:-3}
small_paths=${NAR_BENCH_SMALL_PATHS:-500}
big_mb=${NAR_BENCH_BIG_MB:-1024}
cases=${*:-real small-paths big}
wanted() { [[ " $cases " == *" $1 "* ]]; }
make_work nar-tool-s3-bench
s3dir=$work/s3
trap 'bash "$root/scripts/s3-server.sh" stop "$s3dir" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bash "$root/scripts/s3-server.sh" start "$s3dir" --watch $$ >&2
set -a
# shellcheck disable=SC1091
source "$s3dir/s3.env"
set +a
host=${NAR_TOOL_S3_ENDPOINT#http://}
warn_if_busy

store=$work/store
real=${NAR_BENCH_REAL:-$(ls -d /usr/lib/python3* 2>/dev/null | grep -E 'python3\.[0-9]+$' | tail -1)}
gen=$work/gen
mkdir -p "$gen"
python3 - "$gen" "$small_paths" "$big_mb" "$real" "$cases" <<'EOF'
import os, random, sys
out, n, big_mb, real, cases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = random.Random(7)
texts = []
for d, _, files in os.walk(real):
    for f in files:
        if f.endswith(".py") and len(texts) < 400:
            try:
                texts.append(open(os.path.join(d, f), "rb").read()[:4096])
            except OSError:
                pass
if "small-paths" in cases:
    for i in range(n):
        p = os.path.join(out, "small-paths", "sp-%04d" % i)
        for sub in ("bin", "lib", "share/doc"):
            os.makedirs(os.path.join(p, sub), exist_ok=True)
            open(os.path.join(p, sub, "f"), "wb").write(rng.choice(texts) + b"%d\n" % i)
if "big" in cases:
    p = os.path.join(out, "big")
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, "data"), "wb") as f:
        for _ in range(big_mb // 2):
            f.write((b"".join(rng.choice(texts) for _ in range(300)))[: 1 << 20].ljust(1 << 20, b"."))
            f.write(os.urandom(1 << 20))
EOF
declare -A lists
if wanted real; then store_add "$store" "$real" >"$work/real.list"; lists[real]=$work/real.list; fi
if wanted small-paths; then store_add "$store" "$gen"/small-paths/* >"$work/small-paths.list"; lists[small-paths]=$work/small-paths.list; fi
if wanted big; then store_add "$store" "$gen/big" >"$work/big.list"; lists[big]=$work/big.list; fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
results=$root/bench-results
mkdir -p "$results"
table=$results/s3.txt
{
  echo "build-cache and verify: S3 bucket (SeaweedFS on loopback) vs directory ($(date -u '+%Y-%m-%d %H:%M'), $(nproc) cores)"
  echo "$($bin --version 2>/dev/null || echo nar-tool); weed $("$HOME/.cache/nar-tool/seaweedfs/bin/weed" version 2>/dev/null | awk '{print $3}')"
  echo
  printf '%-12s %-6s %-7s | %9s %9s %7s %5s | %9s %9s | %s\n' case comp op "dir" "s3" ratio runs "RSS dir" "RSS s3" target
  printf -- '-%.0s' $(seq 100); echo
} >"$table"

run_pair() { # CASE COMP OP RUNS DIR_CMD S3_CMD RESET_CMD
  local name=$1 comp=$2 op=$3 n=$4 dir_cmd=$5 s3_cmd=$6 reset=$7 r side
  local -a dir_t s3_t ratios dir_m s3_m
  for ((r = 0; r < n; r++)); do
    for side in $(round_order "$r" dir s3); do
      # The reset is the directory's (the bucket side gets a prefix of its own).
      if [ "$side" = dir ]; then eval "$reset" >/dev/null 2>&1 || true; fi
      local cmd=$dir_cmd
      if [ "$side" = s3 ]; then
        run_no=$((run_no + 1))
        cmd=${s3_cmd//@RUN@/$run_no}
      fi
      gnu_time "$work/t" sh -c "$cmd" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; die "$name $op $side failed"; }
      read -r wall _ _ rss <"$work/t"
      if [ "$side" = dir ]; then dir_t+=("$wall"); dir_m+=("$rss"); else s3_t+=("$wall"); s3_m+=("$rss"); fi
    done
    ratios+=("$(awk -v a="${s3_t[-1]}" -v b="${dir_t[-1]}" 'BEGIN {printf "%.3f", a / b}')")
  done
  local dmed smed rmed dmax smax verdict
  dmed=$(printf '%s\n' "${dir_t[@]}" | median)
  smed=$(printf '%s\n' "${s3_t[@]}" | median)
  rmed=$(printf '%s\n' "${ratios[@]}" | median)
  dmax=$(printf '%s\n' "${dir_m[@]}" | sort -n | tail -1)
  smax=$(printf '%s\n' "${s3_m[@]}" | sort -n | tail -1)
  if [ "$name" = big ]; then
    verdict=$(awk -v m="$smax" 'BEGIN {print (m / 1024 < 100 ? "MET (< 100 MiB)" : "missed (< 100 MiB)")}')
  else
    verdict=$(awk -v r="$rmed" 'BEGIN {print (r <= 1.5 ? "MET (≤ 1.5×)" : "missed (≤ 1.5×)")}')
  fi
  printf '%-12s %-6s %-7s | %8.2fs %8.2fs %6.2f× %5s | %7.1fMi %7.1fMi | %s\n' "$name" "$comp" "$op" \
    "$dmed" "$smed" "$rmed" "$n" "$(awk -v k="$dmax" 'BEGIN{print k/1024}')" \
    "$(awk -v k="$smax" 'BEGIN{print k/1024}')" "$verdict" | tee -a "$table"
}

run_no=0
for name in real small-paths big; do
  wanted "$name" || continue
  list=${lists[$name]}
  comps="zstd xz"
  n=$runs
  if [ "$name" = big ]; then comps=none; n=1; fi
  for comp in $comps; do
    dir=$work/cache-$name-$comp
    url="s3://$NAR_TOOL_S3_BUCKET/$name-$comp-@RUN@?endpoint=$host&scheme=http"
    common="$(q "$bin") build-cache --quiet --store-root $(q "$store") --compression $comp --paths-from $(q "$list")"
    echo "== $name $comp" >&2
    run_pair "$name" "$comp" build "$n" "$common --to $(q "$dir")" "$common --to '$url'" \
      "rm -rf $(q "$dir")"
    # Verify what the last runs left (the same paths in both).
    [ "$name" = big ] && continue
    last=${url//@RUN@/$run_no}
    run_pair "$name" "$comp" verify "$n" "$(q "$bin") verify --quiet $(q "$dir")" \
      "$(q "$bin") verify --quiet '$last'" true
    # Without contents: the NARs' sizes from the bucket's listing, no request per NAR.
    run_pair "$name" "$comp" verify-nc "$n" "$(q "$bin") verify --quiet --no-contents $(q "$dir")" \
      "$(q "$bin") verify --quiet --no-contents '$last'" true
  done
done
if wanted small-paths; then
  # Average sizes of a NAR file and a narinfo, from the directory built last.
  dir=$work/cache-small-paths-zstd
  n=$(find "$dir/nar" -type f | wc -l)
  nar_b=$(($(find "$dir/nar" -type f -printf '%s\n' | paste -sd+ | bc) / n))
  info_b=$(($(find "$dir" -maxdepth 1 -name '*.narinfo' -printf '%s\n' | paste -sd+ | bc) / n))
  for r in $(seq "$runs"); do
    "$floor" "floor-$r" 16 "put:$n:$nar_b" "put:$n:$info_b" | tail -1 | awk '{print $4}' >>"$work/floor-put"
    # The same puts create-if-absent (If-None-Match: *), as a build commits NARs and narinfos.
    "$floor" "floor-c-$r" 16 "cput:$n:$nar_b" "cput:$n:$info_b" | tail -1 | awk '{print $4}' >>"$work/floor-cput"
    "$floor" "floor-$r" 16 "get:$n:$info_b" "get:$n:$nar_b" | tail -1 | awk '{print $4}' >>"$work/floor-get"
  done
  printf '%-12s %-6s %-7s | %9s %8.2fs %7s %5s | plain client: %d PUTs (%d B, %d B), 16 at a time\n' \
    small-paths zstd floor-b "" "$(median <"$work/floor-put")" "" "$runs" "$((2 * n))" "$nar_b" "$info_b" | tee -a "$table"
  printf '%-12s %-6s %-7s | %9s %8.2fs %7s %5s | plain client: the same PUTs create-if-absent\n' \
    small-paths zstd floor-c "" "$(median <"$work/floor-cput")" "" "$runs" | tee -a "$table"
  printf '%-12s %-6s %-7s | %9s %8.2fs %7s %5s | plain client: %d GETs, 16 at a time\n' \
    small-paths zstd floor-v "" "$(median <"$work/floor-get")" "" "$runs" "$((2 * n))" | tee -a "$table"
fi
if wanted big; then
  # A plain multipart upload of the big NAR's size (compression none: the file is the NAR).
  size=$(find "$work/cache-big-none/nar" -type f -printf '%s\n' | head -1)
  t=$("$floor" floor-big 3 "upload:1:$size" | tail -1 | awk '{print $4}')
  printf '%-12s %-6s %-7s | %9s %8.2fs %7s %5s | plain client: one multipart upload of %d B, 8 MiB parts, 3 at a time\n' \
    big none floor-b "" "$t" "" 1 "$size" | tee -a "$table"
fi
echo
echo "ratio: median of the rounds' s3/dir wall-time ratios; RSS: GNU time's maximum resident set size" | tee -a "$table"
echo "table: $table" >&2
