#!/usr/bin/env bash
# Ingest scenario: sustained distinct Shopify orders/create webhooks at full speed (wrk, closed
# loop), order-bridge's real webhook route side by side with the two reference apps, same run.
#
# Adapted from shared/bench/run_baseline.sh (the baseline harness): same method (server pinned
# to SERVER_CPU, wrk pinned to LOAD_CPU, warm-up whose answers must all be 2xx, interleaved
# runs, min/median/max table, CPU use from /proc). Changes:
#   - targets: bare/uvicorn (bare_app.py), hmac/uvicorn (hmac_app.py), svc/order-bridge
#     (`order-bridge serve` with a generated bench config, `[store] url = "memory://"`) and
#     svc/order-bridge-sqlite (the same with the SQLite store, synchronous = "full", a new file
#     per run under OUT_DIR); no granian.
#   - the wrk script is make_lua.py's ingest.lua: every request a different order (own id,
#     delivery id and HMAC), spread over 10 Shopify integrations /webhooks/shopify/1..10.
#     wrk's warm-up sends phase 1 ids, the measured run phase 2 ids, so no order repeats.
#   - svc/order-bridge: before each run a fake Sendcloud (bench/fake_server.py, the project's
#     strict FakeSendcloud, rate limit OFF) starts pinned to LOAD_CPU, and the service's own
#     limiter is configured far above what flushing needs (benchlib.KEEP_UP), so every order is
#     translated, buffered, batched by 100, sent, accepted by the fake and logged as accepted
#     during the run: the figure is the sustained cost per order, not just the intake. INFO logs
#     go to a file (see docs/benchmarks.md for why); metrics are on (always, in the service).
#   - the summary gives each target's median req/s as a ratio of bare/uvicorn AND of
#     hmac/uvicorn (the reference for order-bridge's target), plus the service's own counts.
#
#   - with -p, two more targets on a PostgreSQL server started per run (bench/pg_server.py:
#     fsync, synchronous commits and full-page writes on, a new database, pinned to PG_CPU):
#     svc/order-bridge-postgres (one `serve`, pinned to SERVER_CPU) and svc/order-bridge-pg-2w
#     (`serve --workers 2`, pinned to SERVER_CPU and LOAD_CPU: both cores, shared with wrk). The
#     database's CPU is measured too (db CPU %), and each target's CPU-µs per webhook counts the
#     service's processes and the database's.
#
#   - with -W, svc/order-bridge-sqlite-2w: `serve --workers 2` on the SQLite store (the first
#     worker owns the file, the other relays to it), pinned to SERVER_CPU and LOAD_CPU like pg-2w.
#
# Usage: bash run_ingest.sh [-r RUNS] [-d SECONDS] [-w WARMUP_SECONDS] [-c CONNS] [-t THREADS] [-o] [-p] [-s] [-W]
#   -o  only the order-bridge targets (no reference apps; ratios then need another run's figures)
#   -p  add the PostgreSQL targets
#   -s  only the store targets that -p compares: SQLite and PostgreSQL (implies -o)
#   -W  add the SQLite `serve --workers 2` target
# Environment (defaults): VENV=<project>/.venv SERVER_CPU=0 LOAD_CPU=1 PG_CPU=$SERVER_CPU BASE_PORT=18800
#   OUT_DIR=/tmp/bench-results/<UTC timestamp>/ingest NOISY_PCT=15
# A run during which other processes used more than NOISY_PCT % of a CPU (this machine is
# shared with other sessions) is marked noisy; a target's figures use only its clean runs
# when it has at least 3 of them, and say so.
# Only binds 127.0.0.1; every wrk call is bounded by `timeout`; it only signals PIDs it started.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
BASE_PORT="${BASE_PORT:-18800}"
PG_CPU="${PG_CPU:-$SERVER_CPU}"
RUNS=5; DURATION=10; WARMUP=3; CONNS=64; THREADS=2; ONLY_SVC=0; PG=0; STORES=0; LITE2=0
while getopts "r:d:w:c:t:opsWh" opt; do
  case "$opt" in
    r) RUNS="$OPTARG" ;; d) DURATION="$OPTARG" ;; w) WARMUP="$OPTARG" ;;
    c) CONNS="$OPTARG" ;; t) THREADS="$OPTARG" ;; o) ONLY_SVC=1 ;; p) PG=1 ;; s) PG=1; STORES=1; ONLY_SVC=1 ;; W) LITE2=1 ;;
    *) sed -n '2,40p' "$0"; exit 2 ;;
  esac
done

TARGETS=()
[ "$ONLY_SVC" = 0 ] && TARGETS+=("bare/uvicorn uvicorn bare_app:app" "hmac/uvicorn uvicorn hmac_app:app")
[ "$STORES" = 0 ] && TARGETS+=("svc/order-bridge serve order-bridge memory")
TARGETS+=("svc/order-bridge-sqlite serve order-bridge sqlite")
[ "$LITE2" = 1 ] && TARGETS+=("svc/order-bridge-sqlite-2w serve order-bridge sqlite2")
[ "$PG" = 1 ] && TARGETS+=("svc/order-bridge-postgres serve order-bridge postgres" "svc/order-bridge-pg-2w serve order-bridge postgres2")

command -v wrk >/dev/null || { echo "wrk not found (apt-get install -y wrk)"; exit 1; }
[ -x "$VENV/bin/uvicorn" ] || { echo "no uvicorn in $VENV (make bench installs the venv)"; exit 1; }

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT_DIR="${OUT_DIR:-/tmp/bench-results/$STAMP/ingest}"
mkdir -p "$OUT_DIR"
TSV="$OUT_DIR/runs.tsv"
CLK_TCK="$(getconf CLK_TCK)"
LUA="$OUT_DIR/ingest.lua"
(cd "$HERE" && "$VENV/bin/python" make_lua.py --integrations 10 "$LUA") >/dev/null || { echo "make_lua.py failed"; exit 1; }

# ---------------------------------------------------------------- environment
{
  echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "params: runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s wrk_threads=$THREADS conns=$CONNS server_cpu=$SERVER_CPU load_cpu=$LOAD_CPU lua=ingest.lua (distinct orders, 10 integrations) payload_bytes=$(grep -m1 -o 'body: [0-9]* bytes' "$LUA" | grep -o '[0-9]*')"
  echo "loadavg_at_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT_DIR/env.txt"

printf 'run\ttarget\tserver\tapp\trps\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us\terr_sock\terr_status\tsrv_cpu_pct\twrk_cpu_pct\tcpu_srv_busy_pct\tcpu_load_busy_pct\tfake_cpu_pct\tother_cpu_pct\tdb_cpu_pct\n' > "$TSV"

# ---------------------------------------------------------------- helpers
SRV_PID=""; FAKE_PID=""; PG_DIR=""
cleanup() {
  local p
  for p in $SRV_PID $FAKE_PID; do kill -TERM "$p" 2>/dev/null; done
  for p in $SRV_PID $FAKE_PID; do wait "$p" 2>/dev/null; done
  SRV_PID=""; FAKE_PID=""
  [ -n "$PG_DIR" ] && "$VENV/bin/python" "$HERE/pg_server.py" stop "$PG_DIR" >/dev/null 2>&1; PG_DIR=""
}
tree() {  # a PID and its children (a `serve --workers` supervisor and its workers)
  echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"
}
db_pids() { [ -n "$PG_DIR" ] && "$VENV/bin/python" "$HERE/pg_server.py" pids "$PG_DIR"; }
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

proc_ticks() {  # utime+stime ticks summed over the given PIDs
  local total=0 p rest f
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    rest="$(sed 's/^.*) //' "/proc/$p/stat")"
    read -r -a f <<< "$rest"
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}
cpu_jiffies() {  # "busy total" for cpuN from /proc/stat
  awk -v c="cpu$1" '$1==c {t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat
}

wait_http() {  # port path pid log: until anything answers (any status), up to ~20 s
  local i code
  for i in $(seq 1 200); do
    if ! kill -0 "$3" 2>/dev/null; then echo "process died; log:"; tail -20 "$4"; return 1; fi
    code="$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null)"
    if [ -n "$code" ] && [ "$code" != "000" ]; then sleep 0.3; return 0; fi
    sleep 0.1
  done
  echo "nothing answered on port $1 within 20 s; log:"; tail -20 "$4"; return 1
}

start_server() {  # server appspec port tag store
  local server="$1" appspec="$2" port="$3" tag="$4" store="${5:-memory}" fport=$(( $3 + 50 ))
  case "$server" in
    uvicorn)
      taskset -c "$SERVER_CPU" "$VENV/bin/uvicorn" "$appspec" --app-dir "$HERE" \
        --host 127.0.0.1 --port "$port" --workers 1 --no-access-log \
        --loop uvloop --http httptools --log-level warning > "$OUT_DIR/$tag.server.log" 2>&1 &
      SRV_PID=$!
      ;;
    serve)
      # niced: it shares LOAD_CPU with wrk, which must not wait while it validates a batch
      taskset -c "$LOAD_CPU" nice -n 19 "$VENV/bin/python" "$HERE/fake_server.py" --port "$fport" \
        --account bench:bench-key --rate-limit off > "$OUT_DIR/$tag.fake.log" 2>&1 &
      FAKE_PID=$!
      wait_http "$fport" /bench/requests "$FAKE_PID" "$OUT_DIR/$tag.fake.log" || return 1
      local url="memory://" cpus="$SERVER_CPU" workers=1
      [ "$store" = sqlite ] || [ "$store" = sqlite2 ] && { rm -f "$OUT_DIR/$tag.db"*; url="sqlite:///$OUT_DIR/$tag.db"; }
      [ "$store" = sqlite2 ] && { cpus="$SERVER_CPU,$LOAD_CPU"; workers=2; }
      if [ "$store" = postgres ] || [ "$store" = postgres2 ]; then
        PG_DIR="$OUT_DIR/$tag.pg"
        url="$("$VENV/bin/python" "$HERE/pg_server.py" start "$PG_DIR" --cpu "$PG_CPU")" || { echo "PostgreSQL did not start"; PG_DIR=""; return 1; }
        [ "$store" = postgres2 ] && { cpus="$SERVER_CPU,$LOAD_CPU"; workers=2; }
      fi
      "$VENV/bin/python" "$HERE/benchlib.py" config "$OUT_DIR/$tag.toml" --port "$port" --sendcloud-port "$fport" --keep-up --store "$url"
      # uvicorn inside `serve`: 1 worker, uvloop + httptools (auto: both installed), no access log
      taskset -c "$cpus" "$VENV/bin/order-bridge" serve --config "$OUT_DIR/$tag.toml" --workers "$workers" \
        > "$OUT_DIR/$tag.service.log" 2>&1 &
      SRV_PID=$!
      ;;
    *) echo "unknown server $server"; return 1 ;;
  esac
  local path=/ log="$OUT_DIR/$tag.server.log"
  [ "$server" = serve ] && { path=/healthz; log="$OUT_DIR/$tag.service.log"; }
  wait_http "$port" "$path" "$SRV_PID" "$log" || { stop_server; return 1; }
}

stop_pid() {
  local pid="$1" i
  [ -n "$pid" ] || return 0
  kill -INT "$pid" 2>/dev/null
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null; sleep 2; fi
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
  wait "$pid" 2>/dev/null
}
stop_server() {
  stop_pid "$SRV_PID"; SRV_PID=""; stop_pid "$FAKE_PID"; FAKE_PID=""
  [ -n "$PG_DIR" ] && "$VENV/bin/python" "$HERE/pg_server.py" stop "$PG_DIR" >/dev/null 2>&1; PG_DIR=""
}

port_free() { ! ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

kv() { sed -n 's/.*\b'"$2"'=\([0-9.]*\).*/\1/p' <<< "$1"; }

# ---------------------------------------------------------------- main loop
for run in $(seq 1 "$RUNS"); do
  idx=0
  for spec in "${TARGETS[@]}"; do
    read -r name server appspec store <<< "$spec"
    port=$(( BASE_PORT + idx )); idx=$(( idx + 1 ))
    tag="$(echo "$name" | tr '/' '_')_run$run"
    url="http://127.0.0.1:$port"
    if ! port_free "$port" || ! port_free $(( port + 50 )); then echo "[$name run $run] port $port busy, skipping"; continue; fi
    echo "[$name run $run] starting $server $appspec on $url"
    if ! start_server "$server" "$appspec" "$port" "$tag" "${store:-}"; then
      printf '%s\t%s\t%s\t%s\tFAIL\n' "$run" "$name" "$server" "$appspec" >> "$TSV"; continue
    fi
    warm="$(timeout $(( WARMUP + 15 )) taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$LUA" "$url" -- 1 2>&1)"
    wreq="$(kv "$(grep '^RESULT' <<< "$warm")" requests)"; wst="$(kv "$(grep '^RESULT' <<< "$warm")" err_status)"
    if [ -z "$wreq" ] || [ "$wreq" = 0 ] || [ "$wst" != 0 ]; then
      echo "[$name run $run] warm-up failed (requests=${wreq:-?} non-2xx=${wst:-?}):"; echo "$warm" | tail -5
      printf '%s\t%s\t%s\t%s\tFAIL\n' "$run" "$name" "$server" "$appspec" >> "$TSV"; stop_server; continue
    fi
    # measured window
    SRV_TREE="$(tree "$SRV_PID")"; DB="$(db_pids)"
    t0="$(proc_ticks $SRV_TREE)"; f0="$(proc_ticks $FAKE_PID)"; d0="$(proc_ticks $DB)"
    read -r sb0 st0 <<< "$(cpu_jiffies "$SERVER_CPU")"; read -r lb0 lt0 <<< "$(cpu_jiffies "$LOAD_CPU")"
    start_ns="$(date +%s%N)"
    TIMEFORMAT='%U %S'
    { time timeout $(( DURATION + 15 )) taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "$url" -- 2 > "$OUT_DIR/$tag.wrk.txt" 2>&1 ; } 2> "$OUT_DIR/$tag.wrk.time"
    end_ns="$(date +%s%N)"
    DB="$(db_pids)"  # backends that came and went are missed: the pool keeps its connections
    t1="$(proc_ticks $SRV_TREE)"; f1="$(proc_ticks $FAKE_PID)"; d1="$(proc_ticks $DB)"
    read -r sb1 st1 <<< "$(cpu_jiffies "$SERVER_CPU")"; read -r lb1 lt1 <<< "$(cpu_jiffies "$LOAD_CPU")"
    if [ "$server" = serve ]; then
      sleep 2  # the last lanes flush (debounce 1 s)
      "$VENV/bin/python" "$HERE/benchlib.py" svc-stats --port "$port" --fake-port $(( port + 50 )) --pid "$SRV_PID" > "$OUT_DIR/$tag.stats.json" 2>&1
    fi
    stop_server
    if [ "$server" = serve ]; then
      log="$OUT_DIR/$tag.service.log"
      {
        echo "log_bytes=$(stat -c %s "$log")"
        echo "order_buffered=$(grep -c '"event":"order.buffered"' "$log")"
        echo "order_accepted=$(grep -c '"event":"order.accepted"' "$log")"
        echo "batch_flush=$(grep -c '"event":"batch.flush"' "$log")"
        echo "batch_retry=$(grep -c '"event":"batch.retry"' "$log")"
        echo "errors=$(grep -c '"level":"error"' "$log")"
      } > "$OUT_DIR/$tag.logcounts.txt"
      # the log holds one line per order and batch (tens of MB a run): keep its ends only
      { head -5 "$log"; echo "... (cut by run_ingest.sh; counts in $tag.logcounts.txt)"; tail -5 "$log"; } > "$log.cut" && mv "$log.cut" "$log"
    fi
    res="$(grep '^RESULT' "$OUT_DIR/$tag.wrk.txt")"
    if [ -z "$res" ]; then
      echo "[$name run $run] no RESULT line:"; tail -5 "$OUT_DIR/$tag.wrk.txt"
      printf '%s\t%s\t%s\t%s\tFAIL\n' "$run" "$name" "$server" "$appspec" >> "$TSV"; continue
    fi
    wall_s="$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN{print (b-a)/1e9}')"
    read -r wu ws < "$OUT_DIR/$tag.wrk.time"
    srv_cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v w="$wall_s" 'BEGIN{printf "%.0f", 100*(b-a)/hz/w}')"
    fake_cpu="$(awk -v a="$f0" -v b="$f1" -v hz="$CLK_TCK" -v w="$wall_s" 'BEGIN{printf "%.0f", 100*(b-a)/hz/w}')"
    db_cpu="$(awk -v a="$d0" -v b="$d1" -v hz="$CLK_TCK" -v w="$wall_s" 'BEGIN{printf "%.0f", 100*(b-a)/hz/w}')"
    wrk_cpu="$(awk -v u="$wu" -v s="$ws" -v w="$wall_s" 'BEGIN{printf "%.0f", 100*(u+s)/w}')"
    srv_busy="$(awk -v a="$sb0" -v b="$sb1" -v x="$st0" -v y="$st1" 'BEGIN{printf "%.0f", 100*(b-a)/(y-x)}')"
    load_busy="$(awk -v a="$lb0" -v b="$lb1" -v x="$lt0" -v y="$lt1" 'BEGIN{printf "%.0f", 100*(b-a)/(y-x)}')"
    # CPU time used on the two CPUs by anything but the server, wrk and the fake (other sessions'
    # processes, and the kernel's share of loopback traffic), in % of one CPU
    other="$(awk -v s="$(( sb1 - sb0 + lb1 - lb0 ))" -v own="$(( t1 - t0 + f1 - f0 + d1 - d0 ))" -v u="$wu" -v k="$ws" -v hz="$CLK_TCK" -v w="$wall_s" \
      'BEGIN{o = (s - own - (u + k) * hz) / hz / w * 100; if (o < 0) o = 0; printf "%.0f", o}')"
    sockerr=$(( $(kv "$res" err_connect) + $(kv "$res" err_read) + $(kv "$res" err_write) + $(kv "$res" err_timeout) ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$run" "$name" "$server" "$appspec" "$(kv "$res" rps)" "$(kv "$res" p50_us)" "$(kv "$res" p90_us)" \
      "$(kv "$res" p99_us)" "$(kv "$res" p999_us)" "$(kv "$res" max_us)" "$sockerr" "$(kv "$res" err_status)" \
      "$srv_cpu" "$wrk_cpu" "$srv_busy" "$load_busy" "$fake_cpu" "$other" "$db_cpu" >> "$TSV"
    echo "[$name run $run] rps=$(kv "$res" rps) p50=$(kv "$res" p50_us)us p99=$(kv "$res" p99_us)us non2xx=$(kv "$res" err_status) sockerr=$sockerr srv_cpu=${srv_cpu}% wrk_cpu=${wrk_cpu}% fake_cpu=${fake_cpu}% other_cpu=${other}% db_cpu=${db_cpu}% cpu${SERVER_CPU}=${srv_busy}% cpu${LOAD_CPU}=${load_busy}%"
    [ "$server" = serve ] && echo "[$name run $run] $(tr '\n' ' ' < "$OUT_DIR/$tag.logcounts.txt") $(cat "$OUT_DIR/$tag.stats.json")"
  done
done

# ---------------------------------------------------------------- summary
"$VENV/bin/python" - "$OUT_DIR" "$DURATION" "$WARMUP" "${NOISY_PCT:-15}" > "$OUT_DIR/summary.md" <<'PY'
import csv, json, statistics, sys
from pathlib import Path
out, duration, warmup, noisy = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = list(csv.DictReader(open(out / "runs.tsv"), delimiter="\t"))
order, by, dropped = [], {}, {}
for r in rows:
    if r["target"] not in by:
        order.append(r["target"]); by[r["target"]] = []
    if r["rps"] != "FAIL":
        by[r["target"]].append(r)
for t in order:
    clean = [r for r in by[t] if float(r["other_cpu_pct"]) <= noisy]
    dropped[t] = f"{len(by[t]) - len(clean)} left out" if len(clean) >= 3 else f"all used (only {len(clean)} clean)"
    if len(clean) >= 3:
        by[t] = clean
def mmm(vals, fmt):
    if not vals: return "n/a"
    return "/".join(fmt(v) for v in (min(vals), statistics.median(vals), max(vals)))
ms = lambda v: f"{v/1000:.2f}"
med_rps = {t: statistics.median(float(r["rps"]) for r in by[t]) for t in order if by[t]}
bare, ref = med_rps.get("bare/uvicorn"), med_rps.get("hmac/uvicorn")
print((out / "env.txt").read_text().rstrip())
print()
print(f"Runs with other processes above {noisy:g} % of a CPU are left out when 3 clean ones remain: "
      + "; ".join(f"{t} {n}" for t, n in dropped.items()) + ".")
print()
print("| target | runs used | req/s min/med/max | p50 ms (med) | p99 ms min/med/max | vs bare | vs hmac+decode | srv CPU % | db CPU % | CPU µs/webhook (srv+db) | wrk CPU % | fake CPU % | cpu busy srv/load % | other CPU % (max) | non-2xx / sock err |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
summary = {"targets": {}}
for t in order:
    rs = by[t]
    n_all = sum(1 for r in rows if r["target"] == t)
    if not rs:
        print(f"| {t} | 0/{n_all} | FAIL |||||||||||| |"); continue
    f = lambda k: [float(r[k]) for r in rs]
    med = lambda k: statistics.median(f(k))
    rb = f"{med_rps[t]/bare:.3f}" if bare else "n/a"
    rh = f"{med_rps[t]/ref:.3f}" if ref else "n/a"
    print(f"| {t} | {len(rs)}/{n_all} | {mmm(f('rps'), lambda v: f'{v:,.0f}')} | {ms(med('p50_us'))} | {mmm(f('p99_us'), ms)} "
          f"| {rb} | {rh} | {med('srv_cpu_pct'):.0f} | {med('db_cpu_pct'):.0f} "
          f"| {statistics.median((float(r['srv_cpu_pct']) + float(r['db_cpu_pct'])) * 1e4 / float(r['rps']) for r in rs):.0f} "
          f"| {med('wrk_cpu_pct'):.0f} | {med('fake_cpu_pct'):.0f} "
          f"| {med('cpu_srv_busy_pct'):.0f}/{med('cpu_load_busy_pct'):.0f} | {max(f('other_cpu_pct')):.0f} "
          f"| {sum(int(float(r['err_status'])) for r in rs)} / {sum(int(float(r['err_sock'])) for r in rs)} |")
    summary["targets"][t] = {"rps_median": med_rps[t], "rps_all": f("rps"), "p50_ms": med("p50_us") / 1000,
                             "p99_ms": med("p99_us") / 1000, "vs_bare": med_rps[t] / bare if bare else None,
                             "vs_hmac": med_rps[t] / ref if ref else None}
spread = [f"{t}: {(max(v)-min(v))/statistics.median(v)*100:.1f}%" for t in order
          if len(v := [float(r['rps']) for r in by[t]]) > 1]
print()
print("req/s spread (max-min)/median: " + ", ".join(spread))
mem, lite = med_rps.get("svc/order-bridge"), med_rps.get("svc/order-bridge-sqlite")
if mem and lite:
    print()
    print(f"SQLite store (synchronous = full) vs memory store, same run: {lite:,.0f} / {mem:,.0f} req/s = {lite / mem:.3f}x")
    summary["sqlite_vs_memory"] = lite / mem
pg, pg2 = med_rps.get("svc/order-bridge-postgres"), med_rps.get("svc/order-bridge-pg-2w")
if pg and lite:
    print()
    print(f"PostgreSQL store vs SQLite store (one process each), same run: {pg:,.0f} / {lite:,.0f} req/s = {pg / lite:.3f}x")
    summary["postgres_vs_sqlite"] = pg / lite
lite2 = med_rps.get("svc/order-bridge-sqlite-2w")
if lite and lite2:
    print(f"serve --workers 2 vs one process, both on SQLite: {lite2:,.0f} / {lite:,.0f} req/s = {lite2 / lite:.3f}x")
    summary["sqlite_workers2_vs_1"] = lite2 / lite
if pg and pg2:
    print(f"serve --workers 2 vs one process, both on PostgreSQL: {pg2:,.0f} / {pg:,.0f} req/s = {pg2 / pg:.3f}x")
    summary["workers2_vs_1"] = pg2 / pg
# per-run service accounting: every answered webhook became an order that reached the fake
svc = []
for stats in sorted(out.glob("svc_order-bridge*_run*.stats.json")):
    tag = stats.name.removesuffix(".stats.json")
    try:
        s = json.loads(stats.read_text())
    except ValueError:
        continue
    counts = dict(l.split("=", 1) for l in (out / f"{tag}.logcounts.txt").read_text().split())
    svc.append((tag, s, counts))
if svc:
    print()
    print("| svc run | webhooks accepted | orders 201 at the fake | Sendcloud POSTs (non-201) | pending after 2 s | RSS MB | log bytes/order | error lines |")
    print("|---|---|---|---|---|---|---|---|")
    for tag, s, c in svc:
        per = int(c["log_bytes"]) / max(1, int(c["order_buffered"]))
        print(f"| {tag} | {s['accepted_webhooks']:,.0f} | {s['sendcloud_orders_201']:,} | {s['sendcloud_posts']:,} ({s['sendcloud_other']}) "
              f"| {s['pending']:,.0f} | {s['rss_mb']} | {per:.0f} | {c['errors']} |")
    summary["svc_runs"] = [{"tag": t, **s, **c} for t, s, c in svc]
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PY
echo
cat "$OUT_DIR/summary.md"
echo
echo "raw: $TSV"
echo "reproduce: make bench SCENARIOS=ingest   (or: bash bench/run_ingest.sh -r $RUNS -d $DURATION -w $WARMUP -c $CONNS -t $THREADS)"
