#!/usr/bin/env bash
# Profile scenario: where order-bridge's CPU goes under the ingest load.
#
# Same set-up as run_ingest.sh's svc/order-bridge target (service pinned to SERVER_CPU with the
# keep-up bench config, INFO logs to a file, fake Sendcloud with rate limit off and wrk with
# distinct orders on LOAD_CPU), then py-spy samples the service from outside (no code change,
# blocking sampling at RATE Hz: each sample pauses the process ~0.1 ms) while wrk runs, and
# profile_report.py sums the stacks by cost centre (HMAC, body read, decode + translate,
# buffer.add, structlog, prometheus, starlette, uvicorn, flush side ...).
#
# py-spy is installed into its own throwaway venv (PYSPY_VENV, default /tmp/order-bridge-pyspy),
# never into the project's. Needs root (ptrace), which `make bench` has here.
#
# Usage: bash profile_ingest.sh [-d SECONDS] [-r RATE_HZ]
# Environment: VENV=<project>/.venv SERVER_CPU=0 LOAD_CPU=1 PORT=18870 STORE=memory (or sqlite:
#   a new file under OUT_DIR, synchronous = "full") OUT_DIR=/tmp/bench-results/<UTC timestamp>/profile
set -u -o pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
SERVER_CPU="${SERVER_CPU:-0}"; LOAD_CPU="${LOAD_CPU:-1}"
PORT="${PORT:-18870}"; FPORT=$(( PORT + 50 )); STORE="${STORE:-memory}"
PYSPY_VENV="${PYSPY_VENV:-/tmp/order-bridge-pyspy}"
DURATION=15; RATE=200
while getopts "d:r:h" opt; do
  case "$opt" in d) DURATION="$OPTARG" ;; r) RATE="$OPTARG" ;; *) sed -n '2,18p' "$0"; exit 2 ;; esac
done
OUT_DIR="${OUT_DIR:-/tmp/bench-results/$(date -u +%Y%m%dT%H%M%SZ)/profile}"
mkdir -p "$OUT_DIR"
STORE_URL="memory://"
[ "$STORE" = sqlite ] && { rm -f "$OUT_DIR/state.db"*; STORE_URL="sqlite:///$OUT_DIR/state.db"; }

if [ ! -x "$PYSPY_VENV/bin/py-spy" ]; then
  python3 -m venv "$PYSPY_VENV" && "$PYSPY_VENV/bin/pip" install --quiet py-spy || { echo "could not install py-spy"; exit 1; }
fi

SRV_PID=""; FAKE_PID=""
cleanup() {
  local p
  for p in $SRV_PID $FAKE_PID; do kill -INT "$p" 2>/dev/null; done
  for p in $SRV_PID $FAKE_PID; do wait "$p" 2>/dev/null; done
  SRV_PID=""; FAKE_PID=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

wait_http() {
  local i
  for i in $(seq 1 200); do
    kill -0 "$3" 2>/dev/null || { echo "process died"; return 1; }
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1$2")" != 000 ] && return 0
    sleep 0.1
  done
  return 1
}

(cd "$HERE" && "$VENV/bin/python" make_lua.py --integrations 10 "$OUT_DIR/ingest.lua") > /dev/null
taskset -c "$LOAD_CPU" nice -n 19 "$VENV/bin/python" "$HERE/fake_server.py" --port "$FPORT" --account bench:bench-key \
  --rate-limit off > "$OUT_DIR/fake.log" 2>&1 &
FAKE_PID=$!
wait_http "$FPORT" /bench/requests "$FAKE_PID" || exit 1
"$VENV/bin/python" "$HERE/benchlib.py" config "$OUT_DIR/bench.toml" --port "$PORT" --sendcloud-port "$FPORT" --keep-up --store "$STORE_URL"
taskset -c "$SERVER_CPU" "$VENV/bin/order-bridge" serve --config "$OUT_DIR/bench.toml" > "$OUT_DIR/service.log" 2>&1 &
SRV_PID=$!
wait_http "$PORT" /healthz "$SRV_PID" || exit 1

timeout 20 taskset -c "$LOAD_CPU" wrk -t2 -c64 -d3s -s "$OUT_DIR/ingest.lua" "http://127.0.0.1:$PORT" -- 1 > /dev/null
timeout $(( DURATION + 20 )) taskset -c "$LOAD_CPU" wrk -t2 -c64 -d$(( DURATION + 2 ))s -s "$OUT_DIR/ingest.lua" \
  "http://127.0.0.1:$PORT" -- 2 > "$OUT_DIR/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 1
taskset -c "$LOAD_CPU" "$PYSPY_VENV/bin/py-spy" record --pid "$SRV_PID" --rate "$RATE" --duration "$DURATION" \
  --format raw --nolineno --output "$OUT_DIR/profile.txt" > "$OUT_DIR/py-spy.log" 2>&1
wait "$WRK_PID"
cleanup
: > "$OUT_DIR/service.log"  # one line per order: not worth keeping

echo "wrk during the profile: $(grep -o 'rps=[0-9.]*' "$OUT_DIR/wrk.txt") (py-spy's pauses included)"
"$VENV/bin/python" "$HERE/profile_report.py" "$OUT_DIR/profile.txt" | tee "$OUT_DIR/report.md"
echo "raw stacks: $OUT_DIR/profile.txt"
echo "reproduce: make bench SCENARIOS=profile   (or: bash bench/profile_ingest.sh -d $DURATION -r $RATE)"
