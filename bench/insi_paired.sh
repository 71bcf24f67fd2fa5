#!/usr/bin/env bash
# INSi throughput of this checkout against an earlier revision, paired on the same machine: the two simulators
# run one at a time, alternating (ABBAAB…), each `segur-bench sim insi --workers 2` with its journal on, loaded by
# wrk with the same request: this checkout's probe (segur_bench/probes/insi-clerico.xml). WireMock's speed drifts a lot between
# runs (bench/insi_vs_wiremock.py); this is the check that a change did not slow the simulator itself.
#
#   bench/insi_paired.sh REV [ROUNDS] [CONNECTIONS]      e.g. bench/insi_paired.sh 783bc31 3 50
# Needs wrk and the project's .venv; the earlier revision is checked out in a temporary git worktree.
set -euo pipefail
rev=${1:?usage: bench/insi_paired.sh REV [ROUNDS] [CONNECTIONS]}
rounds=${2:-3}
conns=${3:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
port=${INSI_PAIRED_PORT:-9901}
body=$(mktemp)
cleanup() { pkill -f "sim insi --port $port" 2>/dev/null || true; git -C "$here" worktree remove --force "$old" \
  2>/dev/null || true; rm -f "$body"; }
trap cleanup EXIT
git -C "$here" worktree add -q --detach "$old" "$rev"
sed 's/{message_id}/urn:uuid:00000000-0000-4000-8000-000000000001/' "$here/segur_bench/probes/insi-clerico.xml" > "$body"
ln -s "$here/.venv" "$old/.venv"
run() { # label tree
  local dd; dd=$(mktemp -d)
  (cd "$2" && PYTHONPATH="$2" exec "$here/.venv/bin/python" -m segur_bench sim insi --port "$port" --no-tls \
     --data-dir "$dd" --workers 2 >/dev/null 2>&1) &
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/_bench/health" && break; sleep 0.2; done
  INSI_BODY=$body wrk -t2 -c"$conns" -d5s -s "$here/bench/insi_post.lua" "http://127.0.0.1:$port" >/dev/null  # warm-up
  local rps; rps=$(INSI_BODY=$body wrk -t2 -c"$conns" -d10s -s "$here/bench/insi_post.lua" \
    "http://127.0.0.1:$port" | awk '/Requests\/sec/ {print $2}')
  printf '%-7s %s req/s\n' "$1" "$rps"
  pkill -INT -f "sim insi --port $port" || true; sleep 2; pkill -f "sim insi --port $port" || true; sleep 1
  rm -rf "$dd"
}
echo "INSi, $conns connections, 10 s per run after a 5-s warm-up; before = $rev, after = $(git -C "$here" rev-parse --short HEAD)"
for r in $(seq "$rounds"); do
  if (( r % 2 )); then run before "$old"; run after "$here"; else run after "$here"; run before "$old"; fi
done
