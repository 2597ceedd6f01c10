#!/usr/bin/env bash
# Runs Candlecast end to end on this machine, no Docker: installs what is missing (Debian packages),
# starts RabbitMQ and PostgreSQL (scripts/servers.sh), builds in release mode, starts the six services (two
# trainers), loads history, waits for the first sweep and promotion, prints the champion's test metrics next
# to the naive forecast's and the first forecast, then keeps forecasting new candles as they close.
#
#   scripts/run.sh                      history from Kraken's REST API (the last 720 candles), then live
#   scripts/run.sh --history FILE       history from a Kraken OHLCVT file (data/kraken_XBTUSD_1440.csv)
#   scripts/run.sh --history FILE --replay FILE2 [--tick-seconds S]
#                                       then FILE2 (e.g. data/kraken_XBTUSD_1440_2024.csv) replayed
#                                       day by day through the fake Kraken server: the live path, watchable
#   --keep-gate-decision                do not promote the best challenger when the gate refuses every model
#
# Ctrl-C stops every process it started (the servers keep running: scripts/servers.sh stop).
set -euo pipefail
started=$(date +%s)
history="" replay="" tick_seconds=3 demo_promotion=1
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --history) history=${2:?--history needs a file}; shift 2 ;;
    --replay) replay=${2:?--replay needs a file}; shift 2 ;;
    --tick-seconds) tick_seconds=${2:?--tick-seconds needs a number}; shift 2 ;;
    --keep-gate-decision) demo_promotion=0; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
for file in "$history" "$replay"; do
  [ -z "$file" ] || [ -r "$file" ] || { echo "cannot read $file" >&2; exit 2; }
done
[ -z "$history" ] || history=$(realpath "$history")
[ -z "$replay" ] || replay=$(realpath "$replay")
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - started )) s"; }

if [ -z "$history" ] && [ -z "$replay" ]; then
  say "checking that Kraken's REST API answers (history comes from it without --history)"
  if ! curl -fsS --max-time 10 https://api.kraken.com/0/public/Time >/dev/null 2>&1; then
    cat >&2 <<'MSG'
Kraken's REST API (https://api.kraken.com) cannot be reached from this machine, and no history file was
given. Candlecast needs candles to train on. Either:
  scripts/run.sh --history data/kraken_XBTUSD_1440.csv
  scripts/run.sh --history data/kraken_XBTUSD_1440.csv --replay data/kraken_XBTUSD_1440_2024.csv
(a Kraken OHLCVT file: https://support.kraken.com/hc/en-us/articles/360047124832)
MSG
    exit 2
  fi
fi

say "starting RabbitMQ and PostgreSQL (installing them first if needed)"
scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env

say "building the services in release mode (the first build takes a few minutes)"
swift build -c release 2>&1 | grep -E "error|Compiling|Build" | tail -1
bin=$(swift build -c release --show-bin-path)
export PATH="$bin:$PATH"
mkdir -p .local/logs

pids=()
stop_all() {
  say "stopping every process this script started"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # name port [instance] [VAR=value ...]
  local name=$1 port=$2 instance=$3; shift 3
  # Each service reaches PostgreSQL as its own role, which owns only its schema, and RabbitMQ as its own
  # user, which may publish only its own events (SECURITY.md).
  local credentials=()
  mapfile -t credentials < <(scripts/servers.sh service-env "$name")
  env CANDLECAST_HTTP_PORT="$port" "${credentials[@]}" "$@" "$bin/$name" >".local/logs/$name$instance.log" 2>&1 &
  pids+=($!)
}

ingestor_env=()
if [ -n "$replay" ]; then
  say "starting the fake Kraken server: $(basename "$replay") will close one candle every $tick_seconds s once a model is in place"
  "$bin/fake-kraken" --port 8799 --replay "$replay" --closed 0 >.local/logs/fake-kraken.log 2>&1 &
  pids+=($!)
  ingestor_env=(CANDLECAST_KRAKEN_URL=http://127.0.0.1:8799 CANDLECAST_KRAKEN_POLL_SECONDS=1)
fi

say "starting the services (logs in .local/logs)"
start ingestor 8081 "" "${ingestor_env[@]}"
start preprocessor 8082 ""
start trainer 8083 -1
start trainer 8087 -2
start registry 8084 ""
start predictor 8085 ""
start monitor 8086 ""
for port in 8081 8082 8083 8087 8084 8085 8086; do
  for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { say "the service on port $port is not ready; see .local/logs"; exit 1; }
done
say "all seven processes ready ($(elapsed))"

if [ -n "$history" ]; then
  say "backfilling $(basename "$history")"
  candlecast backfill "$history"
else
  say "waiting for the ingestor's first poll of Kraken's REST API"
fi

say "waiting for the first dataset version"
until curl -fs http://127.0.0.1:8082/v1/datasets/XBTUSD/1d | grep -q '"version"'; do sleep 2; done
say "dataset: $(curl -fs http://127.0.0.1:8082/v1/datasets/XBTUSD/1d | python3 -c "import json,sys; v=json.load(sys.stdin)['versions'][-1]; print(f\"version {v['version']}, {v['row_count']} candles, training rows end at {v['training_end']}\")")"

champion=$(curl -fs http://127.0.0.1:8084/v1/models | python3 -c "
import json, sys
print(next((str(m['aliases'].get('champion', '')) for m in json.load(sys.stdin) if m['name'] == 'lstm-xbtusd-1d'), ''))")
if [ -n "$champion" ]; then
  say "lstm-xbtusd-1d already has a champion (v$champion) from an earlier run: no need to wait for a sweep"
else
  say "waiting for the sweep: its jobs run on both trainers ($(elapsed))"
  until curl -fs http://127.0.0.1:8084/v1/runs | grep -q '"status"'; do sleep 2; done
  # The newest sweep is the one the dataset started; runs of older sweeps do not count.
  sweep_runs() { curl -fs http://127.0.0.1:8084/v1/runs | python3 -c "
import json, sys, collections
runs = json.load(sys.stdin); newest = runs[0]['sweep_id']
print(', '.join(f'{n} {s}' for s, n in sorted(collections.Counter(r['status'] for r in runs if r['sweep_id'] == newest).items())))"; }
  while sweep_runs | grep -qE "queued|running"; do
    printf '    %s\n' "$(sweep_runs)"
    sleep 10
  done
  sleep 2
  candlecast runs list --limit 10

  sweep=$(curl -fs http://127.0.0.1:8084/v1/runs | python3 -c "import json, sys; print(json.load(sys.stdin)[0]['sweep_id'])")
  decision=$(curl -fs "http://127.0.0.1:8084/v1/sweeps/$sweep" | python3 -c "
import json, sys
d = json.load(sys.stdin).get('decision') or {}
print(('PROMOTED' if d.get('promoted') else 'REFUSED') + ': ' + str(d.get('reason', 'no decision recorded')))")
  say "promotion gate: $decision"
  if [[ $decision == REFUSED* ]]; then
    if [ "$demo_promotion" = 1 ]; then
      best=$(curl -fs http://127.0.0.1:8084/v1/models/lstm-xbtusd-1d/versions | python3 -c "
import json, sys
versions = [v for v in json.load(sys.stdin) if v.get('test_metrics')]
print(min(versions, key=lambda v: v['test_metrics']['mase'])['version'])")
      say "no model beat the naive forecast, so the gate kept them all as challengers. For this demo the best one"
      say "(v$best) is promoted by hand, recorded as such in the alias history; --keep-gate-decision skips this."
      candlecast models promote "$best" --reason "demo: promoted by scripts/run.sh although the gate refused it ($decision)"
    else
      say "no champion: the predictor keeps the windows until a model is promoted (candlecast models promote)"
    fi
  fi
fi

if curl -fs http://127.0.0.1:8084/v1/models/lstm-xbtusd-1d/versions >/dev/null 2>&1; then
  say "the champion's test metrics (BTC-daily-v1 test split) next to the naive forecast's"
  candlecast models show | awk 'NR==1 || /champion/'
fi

if [ -n "$replay" ]; then
  # The ticker also ends by itself when this script does, whatever signal stopped it.
  ( while sleep "$tick_seconds" && kill -0 $$ 2>/dev/null; do curl -fs -X POST http://127.0.0.1:8799/control/tick >/dev/null || true; done ) &
  pids+=($!)
fi
say "waiting for the first forecast"
until curl -fs "http://127.0.0.1:8085/v1/forecasts/latest?pair=XBTUSD&interval=1d" >/dev/null 2>&1; do sleep 1; done
say "first forecast after $(elapsed) from the start of this script:"
curl -fs "http://127.0.0.1:8085/v1/forecasts/latest?pair=XBTUSD&interval=1d" | python3 -c "
import json, sys, datetime
f = json.load(sys.stdin)
day = datetime.datetime.fromtimestamp(f['target_open_time'], datetime.timezone.utc).date()
print(f\"    XBTUSD close of {day}: {f['predicted_close']:.2f} USD (last close {f['last_close']:.2f}; {f['model_name']} v{f['model_version']})\")"

cat <<URLS
    dashboard  http://127.0.0.1:8086/
    API        http://127.0.0.1:8085/v1/forecasts/latest?pair=XBTUSD&interval=1d   (docs/predictor-openapi.yaml)
    registry   http://127.0.0.1:8084/v1/models                                     (docs/registry-openapi.yaml)
    metrics    http://127.0.0.1:8086/metrics (and /metrics on ports 8081-8087)
    CLI        $bin/candlecast status   (after: source .local/env)
URLS
if [ -n "$replay" ]; then
  say "replaying $(basename "$replay"): a candle closes every $tick_seconds s; forecasts as they are published (Ctrl-C stops):"
else
  say "forecasting each new candle as it closes on Kraken; forecasts as they are published (Ctrl-C stops):"
fi
candlecast forecasts tail &
pids+=($!)
wait
