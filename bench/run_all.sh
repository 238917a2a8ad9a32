#!/usr/bin/env bash
# Every benchmark of order-bridge, one after the other (what `make bench` runs).
#
#   SCENARIOS="ingest latency e2e batching memory translate"   (default: all of these; add
#             "profile" for the py-spy profile of the ingest path, which installs py-spy into
#             a throwaway venv under /tmp)
#   OUT_DIR=/tmp/bench-results/<UTC timestamp>   where every scenario writes its files
#   QUIET_WAIT=120   seconds to wait, before each scenario, for the machine to be idle (both
#                    CPUs under QUIET_MAX_BUSY=15 %): other sessions' tests on the same 2 CPUs
#                    would be measured too. It goes on after the wait either way and records
#                    how busy the machine was.
#   INGEST_RUNS=5 INGEST_DURATION=10   passed to run_ingest.sh
#   BENCH_SRC=/path   benchmark the service/ and adapters/ found there (e.g. a snapshot made with
#                     `git archive HEAD service adapters | tar -x -C /path`) instead of this
#                     working tree, which other people may be editing; put on PYTHONPATH.
#
# Layout: the service (and the reference apps) on CPU 0, wrk / the load generator / the fake
# Sendcloud on CPU 1. Only 127.0.0.1; every load is bounded in time. Figures and how to read
# them: docs/benchmarks.md. The whole default set takes about 12 minutes.
set -u -o pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export VENV="${VENV:-$ROOT/.venv}"
SCENARIOS="${SCENARIOS:-ingest latency e2e batching memory translate}"
OUT_DIR="${OUT_DIR:-/tmp/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
QUIET_WAIT="${QUIET_WAIT:-120}"; QUIET_MAX_BUSY="${QUIET_MAX_BUSY:-15}"
mkdir -p "$OUT_DIR"
cd "$ROOT" || exit 1
if [ -n "${BENCH_SRC:-}" ]; then
  export PYTHONPATH="$BENCH_SRC${PYTHONPATH:+:$PYTHONPATH}"
  SRC_NOTE="$BENCH_SRC (commit $(cat "$BENCH_SRC/COMMIT" 2>/dev/null || echo '?'))"
else
  SRC_NOTE="working tree at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), uncommitted changes under service/ adapters/: $(git -C "$ROOT" status --porcelain -- service adapters 2>/dev/null | wc -l) files"
fi

for s in $SCENARIOS; do
  case "$s" in ingest|latency|e2e|batching|memory|translate|profile) ;; *) echo "unknown scenario: $s"; exit 2 ;; esac
done

{
  echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "nproc: $(nproc)"
  echo "cpu_model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -r)"
  echo "virt: $(grep -qw hypervisor /proc/cpuinfo && echo 'hypervisor (VM)' || echo 'bare metal?')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "python: $("$VENV/bin/python" -V 2>&1)"
  echo "packages: $("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -Ei '^(order-bridge|starlette|uvicorn|uvloop|httptools|httpx|msgspec|structlog|prometheus.client)==' | tr '\n' ' ')"
  echo "service code: $SRC_NOTE ($("$VENV/bin/python" -c 'import sys; sys.path.pop(0); import service; print(service.__file__)'))"
  echo "scenarios: $SCENARIOS"
} | tee "$OUT_DIR/env.txt"

STARTED=$SECONDS
for s in $SCENARIOS; do
  mkdir -p "$OUT_DIR/$s"
  busy="$("$VENV/bin/python" "$HERE/benchlib.py" quiet --max-busy "$QUIET_MAX_BUSY" --wait "$QUIET_WAIT")"
  echo
  echo "=================== $s (machine busy before start: ${busy} % of the busiest CPU; loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "$s: busy_before=${busy}% loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT_DIR/env.txt"
  t0=$SECONDS
  case "$s" in
    ingest)
      OUT_DIR="$OUT_DIR/ingest" bash "$HERE/run_ingest.sh" -r "${INGEST_RUNS:-5}" -d "${INGEST_DURATION:-10}" ;;
    translate)
      taskset -c 1 "$VENV/bin/python" "$HERE/translate.py" | tee "$OUT_DIR/translate/summary.md" ;;
    profile)
      OUT_DIR="$OUT_DIR/profile" bash "$HERE/profile_ingest.sh" ;;
    *)
      "$VENV/bin/python" "$HERE/scenarios.py" "$s" --out "$OUT_DIR/$s" ;;
  esac 2>&1 | tee "$OUT_DIR/$s/output.txt"
  echo "($s took $(( SECONDS - t0 )) s)"
done

echo
echo "=================== all done in $(( SECONDS - STARTED )) s; results in $OUT_DIR"
for s in $SCENARIOS; do
  [ -f "$OUT_DIR/$s/summary.md" ] || continue
  echo; echo "---- $s"; cat "$OUT_DIR/$s/summary.md"
done > "$OUT_DIR/summary.md"
echo "summary of every scenario: $OUT_DIR/summary.md"
