#!/usr/bin/env bash
# Runs Candlecast locally: installs and starts RabbitMQ and PostgreSQL (scripts/servers.sh), builds the
# services in release mode, starts all six (two trainers), waits until each is ready and prints where
# they answer. With `--history FILE` (a Kraken OHLCVT file such as ../shared/data/kraken_XBTUSD_1440.csv) it
# backfills it and follows the first dataset, sweep and promotion decision. Ctrl-C stops every process it started.
set -euo pipefail
history=""
while [ $# -gt 0 ]; do
  case "$1" in
    --history) history=${2:?--history needs a file}; shift 2 ;;
    *) echo "usage: scripts/run.sh [--history FILE]" >&2; exit 2 ;;
  esac
done
[ -z "$history" ] || [ -r "$history" ] || { echo "cannot read $history" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

say "starting RabbitMQ and PostgreSQL"
scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env

say "building the services (release)"
swift build -c release 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
mkdir -p .local/logs

pids=()
stop_all() {
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # name port [instance]
  local name=$1 port=$2 log=".local/logs/${1}${3:-}.log"
  CANDLECAST_HTTP_PORT=$port "$bin/$name" >"$log" 2>&1 &
  pids+=($!)
  printf '    %-14s http://127.0.0.1:%s   (log %s)\n' "$name${3:-}" "$port" "$log"
}

say "starting the services"
start ingestor 8081
start preprocessor 8082
start trainer 8083 -1
start trainer 8087 -2
start registry 8084
start predictor 8085
start monitor 8086

for port in 8081 8082 8083 8087 8084 8085 8086; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { say "a service on port $port is not ready; see .local/logs"; exit 1; }
done
say "all services ready: health at /healthz and /readyz, Prometheus metrics at /metrics on each port above"
if [ -n "$history" ]; then
  say "backfilling $history"
  CANDLECAST_LOG_LEVEL=warning "$bin/ingestor" backfill "$history"
  # A dataset version of everything stored now (the preprocessor also cuts one by itself as candles arrive);
  # an unchanged series returns the existing version.
  say "dataset: $(curl -fs -X POST http://127.0.0.1:8082/v1/datasets/XBTUSD/1d)"
  say "waiting for the dataset, the sweep and the promotion gate (training runs on both trainers)"
  until curl -fs http://127.0.0.1:8084/v1/runs | grep -q '"status"'; do sleep 2; done
  while curl -fs http://127.0.0.1:8084/v1/runs | grep -qE '"status" *: *"(queued|running)"'; do sleep 5; done
  sleep 2
  sweep=$(curl -fs http://127.0.0.1:8084/v1/runs | python3 -c "import json, sys; print(json.load(sys.stdin)[0]['sweep_id'])")
  curl -fs "http://127.0.0.1:8084/v1/sweeps/$sweep" | python3 -c "
import json, sys
sweep = json.load(sys.stdin)
decision = sweep.get('decision') or {}
print('promotion gate:', 'PROMOTED' if decision.get('promoted') else 'kept as challenger', '-', decision.get('reason', 'pending'))
for run in sweep.get('runs') or []:
    print('  run', run['id'], run['status'], 'on', run['trainer'])
"
  curl -fs http://127.0.0.1:8084/v1/runs | python3 -c "
import json, sys
for run in json.load(sys.stdin):
    test, naive = run.get('test_metrics') or {}, run.get('naive_metrics') or {}
    if test: print(f\"  run {run['id']}: batch {run['params']['batch_size']}, test RMSE {test['rmse']:.0f} USD, MASE {test['mase']:.3f} (naive RMSE {naive['rmse']:.0f})\")
"
  say "registry: http://127.0.0.1:8084/v1/runs   predictor: http://127.0.0.1:8085/v1/forecasts/latest"
fi
say "Ctrl-C stops everything"
wait
