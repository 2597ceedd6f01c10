#!/usr/bin/env bash
# Trainer scaling: the same 4-job sweep (LSTM, BTC daily history 2013-2023) with one trainer process,
# then with two on the same work queue, BLAS threads 1 each. Release builds of preprocessor, registry and
# trainer; prints the sweep's wall time (first job queued to last result stored) and which trainer ran what.
# Usage: scripts/bench-trainers.sh [units] [epochs]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
units=${1:-128}
epochs=${2:-15}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
swift build -c release 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
export PGPASSWORD; PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
port=${CANDLECAST_PG_PORT:-55432}
export CANDLECAST_LOG_LEVEL=warning CANDLECAST_BLAS_THREADS=1 CANDLECAST_PROMOTION_MAX_MASE=10
export CANDLECAST_SWEEP_GRID="{\"units\":[$units],\"epochs\":[$epochs],\"patience\":[$epochs],\"batch_size\":[16,32,64,128]}"
base_url=$CANDLECAST_DATABASE_URL

run() { # trainers
  local trainers=$1 database=candlecast_bench_trainers_$1 pids=()
  psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
  export CANDLECAST_DATABASE_URL="${base_url%/*}/$database"
  "$bin/ingestor" backfill data/kraken_XBTUSD_1440.csv >/dev/null
  for queue in training.jobs registry.datasets registry.training-results; do
    HOME=.local/rabbitmq RABBITMQ_NODENAME=candlecast-${CANDLECAST_AMQP_PORT:-5672}@localhost /usr/lib/rabbitmq/bin/rabbitmqctl -q purge_queue "$queue" >/dev/null 2>&1 || true
  done
  CANDLECAST_HTTP_PORT=18601 "$bin/registry" > .local/bench/registry.log 2>&1 & pids+=($!)
  for i in $(seq 1 "$trainers"); do CANDLECAST_HTTP_PORT=$((18610 + i)) "$bin/trainer" > ".local/bench/trainer-$i.log" 2>&1 & pids+=($!); done
  CANDLECAST_HTTP_PORT=18602 "$bin/preprocessor" > .local/bench/preprocessor.log 2>&1 & pids+=($!)
  for p in 18601 18602 $(seq 18611 $((18610 + trainers))); do
    until curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1; do sleep 0.2; done
  done
  curl -fs -X POST http://127.0.0.1:18602/v1/datasets/XBTUSD/1d >/dev/null
  until [ "$(psql -tA -h 127.0.0.1 -p "$port" -U candlecast -d "$database" -c "SELECT count(*) FROM registry.promotion_decisions" 2>/dev/null || echo 0)" = "1" ]; do sleep 1; done
  psql -tA -h 127.0.0.1 -p "$port" -U candlecast -d "$database" -F ' ' -c \
    "SELECT $trainers, round(extract(epoch FROM max(ended_at) - min(queued_at))::numeric, 1), count(DISTINCT trainer), string_agg(trainer || ':' || (params->>'batch_size'), ' ' ORDER BY id) FROM registry.runs"
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"
}

mkdir -p .local/bench
echo "trainers  sweep_seconds  distinct_trainers  jobs (trainer:batch_size)"
one=$(run 1); echo "$one"
two=$(run 2); echo "$two"
python3 -c "a=float('$one'.split()[1]); b=float('$two'.split()[1]); print(f'4-job sweep, LSTM($units) x $epochs epochs: 1 trainer {a:.1f} s, 2 trainers {b:.1f} s = {a / b:.2f}x faster')"
