#!/usr/bin/env bash
# Benchmark of `nar-tool gc` on a large cache: N synthetic narinfos (default 100 000) written
# directly (no store behind them), each naming a small NAR file of its own (one in 50 shares its
# NAR with the previous path), referring to up to 4 earlier paths (a DAG; some to themselves),
# with a `.ls` listing for one in 10. Roots: `gcroots/` files for one path in 20, so about half
# the cache is live. All files are dated two days back (older than any --grace).
#
# Times, with GNU time (wall seconds, peak memory):
#   dry run   nar-tool gc CACHE --dry-run --json
#   real      nar-tool gc CACHE --grace 0 --json    (on a fresh copy of the cache)
# and prints the summary of each. Nothing to compare against: Nix cannot collect a binary cache.
#
#   benches/gc.sh            # 100 000 narinfos
#   benches/gc.sh 2000       # a smoke test of the script
#
# Environment: NAR_TOOL_BIN (a built binary instead of `cargo build --release`), TMPDIR.
# Requires: cargo, python3, GNU time at /usr/bin/time.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n=${1:-100000}
need python3
need_gnu_time
make_work nar-gc-bench
ours=$(release_bin)
warn_if_busy

echo "== generating a cache of $n narinfos in $work/cache"
python3 - "$work/cache" "$n" <<'PY'
import hashlib, os, random, sys, time
root, n = sys.argv[1], int(sys.argv[2])
alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
def b32(data, length):
    # Any valid nixbase32 string of the right length will do for a synthetic cache.
    return "".join(alphabet[b % 32] for b in data)[:length]
rng = random.Random(1)
os.makedirs(f"{root}/nar"); os.makedirs(f"{root}/gcroots")
with open(f"{root}/nix-cache-info", "w") as f:
    f.write("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
old = time.time() - 2 * 86400
bases, nar = [], None
for i in range(n):
    digest = hashlib.sha256(f"gc-bench {i}".encode()).digest() * 2
    base = f"{b32(digest, 32)}-bench-{i}"
    refs = sorted({bases[rng.randrange(i)] for _ in range(rng.randrange(5))} if i else set())
    if i % 7 == 0:
        refs = sorted(set(refs) | {base})
    if nar is None or i % 50 != 0:
        nar = b32(hashlib.sha256(f"nar {i}".encode()).digest() * 2, 52)
        path = f"{root}/nar/{nar}.nar.zst"
        with open(path, "wb") as f:
            f.write(os.urandom(rng.randrange(200, 2000)))
        os.utime(path, (old, old))
    text = (f"StorePath: /nix/store/{base}\nURL: nar/{nar}.nar.zst\nCompression: zstd\n"
            f"FileSize: {os.path.getsize(f'{root}/nar/{nar}.nar.zst')}\n"
            f"NarHash: sha256:{'0' * 52}\nNarSize: 4096\nReferences: {' '.join(refs)}\n")
    for name, body in [(f"{base[:32]}.narinfo", text)] + ([(f"{base[:32]}.ls", "{}")] if i % 10 == 0 else []):
        with open(f"{root}/{name}", "w") as f:
            f.write(body)
        os.utime(f"{root}/{name}", (old, old))
    if i % 20 == 19:
        open(f"{root}/gcroots/{base}", "w").close()
    bases.append(base)
PY
du -sh "$work/cache" | sed 's/^/== size: /'
cp -a "$work/cache" "$work/cache2"

run() { # LABEL CACHE ARGS...
  local label=$1 cache=$2
  shift 2
  gnu_time "$work/time" "$ours" gc "$cache" --json "$@" >"$work/out.json"
  read -r wall user sys rss <"$work/time"
  printf '%-8s %8.2f s wall %8.2f s user %7.2f s sys %8d KiB peak memory\n' \
    "$label" "$wall" "$user" "$sys" "$rss"
  python3 -c 'import json,sys; print("         summary:", json.dumps(json.load(open(sys.argv[1]))["summary"]))' "$work/out.json"
}

echo "== nar-tool gc on $n narinfos"
run "dry run" "$work/cache" --dry-run
run "real" "$work/cache2" --grace 0
left=$(find "$work/cache2" -maxdepth 1 -name '*.narinfo' | wc -l)
echo "== $left narinfos left after the real run"
