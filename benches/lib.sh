# Helpers shared by the benchmark scripts; sourced, never run:
#
#   source "$(dirname "$0")/lib.sh"
#
# Sourcing it moves to the repository root, sets `root` (its path) and LC_ALL=C. The scripts keep
# `set -euo pipefail` themselves.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
export LC_ALL=C

# --- failing, requirements, scratch space --------------------------------------------------------

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need() { # TOOL...: each must be on PATH
  local tool
  for tool; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
  done
}

need_gnu_time() {
  [ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
}

make_work() { # PREFIX: sets `work` to a new directory under $TMPDIR, removed on exit
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
}

# Builds nar-tool (release) and prints the binary's path, wherever the target directory is
# (CARGO_TARGET_DIR, .cargo/config); NAR_TOOL_BIN names a binary built already instead.
release_bin() {
  if [ -n "${NAR_TOOL_BIN:-}" ]; then
    [ -x "$NAR_TOOL_BIN" ] || die "NAR_TOOL_BIN=$NAR_TOOL_BIN is not an executable"
    echo "$NAR_TOOL_BIN"
    return
  fi
  echo "== cargo build --release" >&2
  cargo build --release --quiet --bin nar-tool
  local bin
  bin=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/nar-tool
  [ -x "$bin" ] || die "no binary at $bin"
  echo "$bin"
}

q() { printf '%q' "$1"; } # quoted for a command line run by sh -c

# --- how busy the machine is --------------------------------------------------------------------

load() { cut -d' ' -f1-3 /proc/loadavg; }

warn_if_busy() { # prints the load average; warns when it is above half the cores
  echo "== load average: $(load) (on $(nproc) cores; measure on a quiet machine)"
  if awk -v n="$(nproc)" '{exit !($1 > 0.5 * n)}' /proc/loadavg; then
    echo "$(basename "$0"): warning: the machine is busy, numbers will be noisy" >&2
  fi
}

cpu_ticks() { # busy and total ticks of all cores since boot (idle and I/O wait are not busy)
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

cpu_busy() { # percent of all cores busy over the next second
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_ticks)
  sleep 1
  read -r b1 t1 < <(cpu_ticks)
  echo $((100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1)))
}

wait_quiet() { # MAX_SECONDS: waits until the cores are ≤ 10 % busy, at most that long; prints
  # the last reading (percent)
  local start=$SECONDS b
  while :; do
    b=$(cpu_busy)
    if [ "$b" -le 10 ] || [ $((SECONDS - start)) -ge "$1" ]; then
      echo "$b"
      return
    fi
    sleep 2
  done
}

# --- timed runs in interleaved rounds -----------------------------------------------------------

# ROUND LABEL...: the labels in the order round ROUND runs them: rotated by one each round, so
# every label goes first in turn and a slow drift of a shared machine's speed, or a burst of
# other work, falls on all of them alike. (Two labels: the second first in odd rounds.)
round_order() {
  local r=$1 n i
  shift
  n=$#
  local labels=("$@")
  for ((i = 0; i < n; i++)); do echo "${labels[$(((i + r) % n))]}"; done
}

# OUT COMMAND...: runs COMMAND under GNU time, which writes "wall user sys maxrss" (seconds,
# seconds, seconds, KiB) to OUT.
gnu_time() {
  local out=$1
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$out" "$@"
}

# --- Nix ----------------------------------------------------------------------------------------

nix3="nix --extra-experimental-features nix-command" # the `nix` command line of Nix 2.8

store_add() { # STORE SOURCE...: adds the sources to the chroot store STORE (created if need be;
  # nothing lands in /nix/store, STORE/nix/store holds them); prints their store paths
  local store=$1
  shift
  nix-store --store "$store" --add "$@"
}

# TARGET_DIR COMPRESSION [FROM_STORE]: the `nix copy` command line that writes a file:// binary
# cache, from FROM_STORE (a chroot store) or the default store; the paths go after it.
nix_copy_cmd() {
  echo "$nix3 copy ${3:+--from $3 }--to file://$1?compression=$2"
}

# The wasm package (pkg/wasm) built again when the crate's sources are newer than it.
wasm_build_if_stale() {
  if [ ! -f "$root/pkg/wasm/nar_tool_bg.wasm" ] ||
    [ -n "$(cd "$root" && find src Cargo.toml Cargo.lock -newer pkg/wasm/nar_tool_bg.wasm -print -quit)" ]; then
    echo "== wasm build (pkg/)" >&2
    (cd "$root/pkg" && npm run --silent build) >&2
  fi
}

# A signing key pair in the current folder (made once by BIN, named NAME); prints the public key.
bench_key() { # BIN NAME
  [ -e secret ] || "$1" key generate "$2" --secret secret --public public >&2
  cat public
}


# A file of BYTES deterministic random bytes (written 8 MiB at a time).
random_file() { # PATH BYTES
  python3 - "$1" "$2" <<'EOF'
import random, sys
path, n = sys.argv[1], max(0, int(sys.argv[2]))
rng = random.Random(2)
with open(path, "wb") as f:
    while n > 0:
        k = min(n, 8 << 20)
        f.write(rng.randbytes(k))
        n -= k
EOF
}
