#!/usr/bin/env bash
# Preprocessor benchmark: a backlog of N candle.closed events (default 100,000, 1-minute candles) waits on
# preprocessor.candles; the preprocessor (release build) is started and drains it, once with
# CANDLECAST_PREPROCESSOR_BATCH=1 (one transaction per event: the anchor) and once with each batch size given
# (default 128). Prints events/s and the process's resident memory sampled every second while the backlog drains.
#   scripts/bench-preprocessor.sh [N] [BATCH...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events=${1:-100000}
shift || true
batches=("${@:-128}")
venv=${ANCHOR_VENV:-$HOME/.venvs/anchors}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import pika" 2>/dev/null || "$venv/bin/pip" install -q pika
swift build -c release 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

mkdir -p .local/bench
file=.local/bench/xbtusd_1m_$events.csv
python3 - "$events" "$file" <<'PY'
import sys
rows, out = int(sys.argv[1]), sys.argv[2]
series = []
for name in ["data/kraken_XBTUSD_1440.csv", "data/kraken_XBTUSD_1440_2024.csv"]:
    series += [line.rstrip("\n").split(",", 1)[1] for line in open(name)]
with open(out, "w") as f:
    for i in range(rows):
        f.write(f"{1577836800 + 60 * i},{series[i % len(series)]}\n")
PY

database=candlecast_bench_preprocessor
export PGPASSWORD; PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
main_url=$CANDLECAST_DATABASE_URL
amqp_password=$(cat "$CANDLECAST_AMQP_PASSWORD_FILE")
psql_main() { psql -q -h 127.0.0.1 -p "${CANDLECAST_PG_PORT:-55432}" -U candlecast -d candlecast "$@"; }
drop_database() {
  # An autovacuum worker (the superuser's) may hold the database for a moment after a drain: retry.
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    psql_main -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" 2>/dev/null && return
    [ $attempt = 10 ] && echo "the benchmark database $database is left behind (another role's connection holds it)" >&2
    sleep 1
  done
}

drain() { # batch size
  local batch=$1
  drop_database
  psql_main -c "CREATE DATABASE $database"
  export CANDLECAST_DATABASE_URL="${main_url%/*}/$database" CANDLECAST_LOG_LEVEL=warning
  "$bin/ingestor" backfill "$file" --pair XBTUSD --interval 1m >/dev/null

  # The preprocessor declares its own queue (a quorum queue) once, with nothing to do, and stops; the backlog then
  # waits on it: one candle.closed event per stored candle, published straight onto the queue.
  CANDLECAST_LOG_LEVEL=info CANDLECAST_HTTP_PORT=18299 "$bin/preprocessor" > .local/bench/preprocessor-declare.log 2>&1 &
  local declare_pid=$!
  for _ in $(seq 1 60); do grep -q "consumer subscribed" .local/bench/preprocessor-declare.log && break; sleep 0.5; done
  kill -TERM $declare_pid; wait $declare_pid || true
  "$venv/bin/python" - "$file" "$amqp_password" "${CANDLECAST_AMQP_PORT:-5672}" <<'PY'
import json, sys, uuid, pika
path, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("candlecast", password)))
channel = connection.channel()
channel.queue_declare("preprocessor.candles", passive=True)
channel.queue_purge("preprocessor.candles")
for line in open(path):
    t, o, h, l, c, v, n = line.strip().split(",")
    body = json.dumps({"pair": "XBTUSD", "interval": "1m", "open_time": int(t), "open": o, "high": h, "low": l, "close": c, "volume": v, "trades": int(n), "revision": 0})
    channel.basic_publish("", "preprocessor.candles", body, pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=str(uuid.uuid4()), type="candle.closed", headers={"schema_version": 1}))
print("backlog:", channel.queue_declare("preprocessor.candles", passive=True).method.message_count, "events", file=sys.stderr)
connection.close()
PY

  # Progress from the database, not rabbitmqctl: starting an Erlang VM every second would take a core from the drain.
  left() { echo $((events - $(psql -tA -h 127.0.0.1 -p "${CANDLECAST_PG_PORT:-55432}" -U candlecast -d "$database" -c "SELECT count(*) FROM features.processed_candles" 2>/dev/null || echo 0))); }
  CANDLECAST_PREPROCESSOR_BATCH=$batch CANDLECAST_DATASET_EVERY=1000000 CANDLECAST_HTTP_PORT=18299 "$bin/preprocessor" > .local/bench/preprocessor.log 2>&1 &
  pid=$!
  local start max_rss=0 samples="" rss left elapsed processed
  start=$(date +%s.%N)
  while true; do
    rss=$(awk '/VmRSS/ { print $2 }' /proc/$pid/status 2>/dev/null || echo 0)
    [ "$rss" -gt "$max_rss" ] && max_rss=$rss
    left=$(left); samples="$samples ${left:-?}:$((rss / 1024))MB"
    [ "${left:-1}" = "0" ] && break
    kill -0 $pid 2>/dev/null || { echo "the preprocessor exited; see .local/bench/preprocessor.log" >&2; tail -3 .local/bench/preprocessor.log >&2; exit 1; }
    sleep 1
  done
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  processed=$(psql -tA -h 127.0.0.1 -p "${CANDLECAST_PG_PORT:-55432}" -U candlecast -d "$database" -c "SELECT count(*) FROM features.processed_candles")
  kill -TERM $pid; wait $pid || true
  pid=""
  echo "samples (events left:RSS):$samples" | fold -w 160
  python3 -c "print(f'preprocessor, batches of up to $batch: {$processed} events in {$elapsed:.1f} s = {$processed / $elapsed:,.0f} events/s; peak RSS {$max_rss / 1024:.0f} MB')" | tee -a .local/bench/preprocessor-summary.txt
}

pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null || true' EXIT
: > .local/bench/preprocessor-summary.txt
for batch in 1 "${batches[@]}"; do drain "$batch"; done
drop_database
echo "--- $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $events events:"
cat .local/bench/preprocessor-summary.txt
