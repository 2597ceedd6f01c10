#!/usr/bin/env bash
# Window-to-forecast latency on loopback: a fresh database with the 2013-2023 history, registry, preprocessor,
# trainer and predictor (release builds); a tiny model is trained and promoted, then ForecastLatencyBench
# publishes features.window events and times each forecast.created delivery. The broker's own round trip
# (BrokerBench) is measured in the same run for reference.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
windows=${1:-500}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
swift build -c release 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
export PGPASSWORD; PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
port=${CANDLECAST_PG_PORT:-55432}
database=candlecast_bench_latency
psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
export CANDLECAST_DATABASE_URL="${CANDLECAST_DATABASE_URL%/*}/$database" CANDLECAST_LOG_LEVEL=warning
export CANDLECAST_PROMOTION_MAX_MASE=100 CANDLECAST_SWEEP_GRID='{"units":[8],"epochs":[3],"batch_size":[64]}'
export CANDLECAST_REGISTRY_URL=http://127.0.0.1:18801
for queue in training.jobs registry.datasets registry.training-results predictor.windows predictor.candles preprocessor.candles; do
  HOME=.local/rabbitmq RABBITMQ_NODENAME=candlecast-${CANDLECAST_AMQP_PORT:-5672}@localhost /usr/lib/rabbitmq/bin/rabbitmqctl -q purge_queue "$queue" >/dev/null 2>&1 || true
done
"$bin/ingestor" backfill data/kraken_XBTUSD_1440.csv >/dev/null
pids=()
CANDLECAST_HTTP_PORT=18801 "$bin/registry" > .local/bench-registry.log 2>&1 & pids+=($!)
CANDLECAST_HTTP_PORT=18802 "$bin/preprocessor" > .local/bench-preprocessor.log 2>&1 & pids+=($!)
CANDLECAST_HTTP_PORT=18803 "$bin/trainer" > .local/bench-trainer.log 2>&1 & pids+=($!)
CANDLECAST_HTTP_PORT=18804 "$bin/predictor" > .local/bench-predictor.log 2>&1 & pids+=($!)
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"' EXIT
for p in 18801 18802 18803 18804; do until curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1; do sleep 0.2; done; done
curl -fs -X POST http://127.0.0.1:18802/v1/datasets/XBTUSD/1d >/dev/null
until curl -fs http://127.0.0.1:18801/v1/models 2>/dev/null | grep -q '"champion"'; do sleep 0.5; done
curl -fs 'http://127.0.0.1:18804/v1/model?pair=XBTUSD&interval=1d' >/dev/null  # load the champion before timing
echo "broker round trip (BrokerBench, same run):"
"$bin/BrokerBench" 2000 1000
echo "window -> forecast (ForecastLatencyBench):"
"$bin/ForecastLatencyBench" "$windows"
