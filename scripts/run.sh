#!/usr/bin/env bash
# Runs Candlecast end to end on this machine, no Docker: installs what is missing (Debian packages),
# starts RabbitMQ and PostgreSQL (scripts/servers.sh), builds in release mode, starts the six services (two
# trainers), loads history, waits for the first sweep (LSTM grid points and the naive baseline, all candidates
# alike) and the gate's decision, prints the champion the gate chose (its family, test MASE and 80% interval
# score next to the naive baseline's) and the first forecast, then keeps forecasting new candles as they close.
# Nothing is promoted by hand: when no LSTM beats the naive forecast, the naive baseline is the champion.
#
#   scripts/run.sh                      history from data/ (2013-2023), then live from Kraken's REST API when it
#                                       answers (2024 from data/ too, the rest from Kraken); without network,
#                                       data/'s 2024 replayed through the fake Kraken server (one line says which)
#   scripts/run.sh --history FILE       history from a Kraken OHLCVT file, then live from Kraken's REST API
#   scripts/run.sh --history FILE --replay FILE2 [--tick-seconds S]
#                                       then FILE2 replayed day by day through the fake Kraken server (one
#                                       candle every S seconds, 3): the live path, watchable
#
# Ctrl-C stops every process it started (the servers keep running: scripts/servers.sh stop). Service logs go
# to .local/logs/, never to this script's output. CANDLECAST_PORT_OFFSET (0) moves every service port
# (8081-8087, the fake Kraken's 8799) by that much; CANDLECAST_AMQP_PORT and CANDLECAST_PG_PORT pick the servers'.
set -euo pipefail
started=$(date +%s)
history="" replay="" tick_seconds=3 extra_history=""
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --history) history=${2:?--history needs a file}; shift 2 ;;
    --replay) replay=${2:?--replay needs a file}; shift 2 ;;
    --tick-seconds) tick_seconds=${2:?--tick-seconds needs a number}; shift 2 ;;
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
root=$(pwd)
logs=$root/.local/logs
mkdir -p "$logs"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - started )) s"; }
day() { date -u -d "@$1" +%F; }
# One candle per line in a Kraken OHLCVT file: its first and last open times.
file_span() { echo "$(day "$(head -1 "$1" | cut -d, -f1)") .. $(day "$(tail -1 "$1" | cut -d, -f1)")"; }

offset=${CANDLECAST_PORT_OFFSET:-0}
port() { echo $(($1 + offset)); }
ingestor_port=$(port 8081) preprocessor_port=$(port 8082) trainer1_port=$(port 8083) registry_port=$(port 8084)
predictor_port=$(port 8085) monitor_port=$(port 8086) trainer2_port=$(port 8087) kraken_port=$(port 8799)
# Where the services and the CLI find each other.
export CANDLECAST_INGESTOR_URL=http://127.0.0.1:$ingestor_port CANDLECAST_PREPROCESSOR_URL=http://127.0.0.1:$preprocessor_port
export CANDLECAST_REGISTRY_URL=http://127.0.0.1:$registry_port CANDLECAST_PREDICTOR_URL=http://127.0.0.1:$predictor_port
export CANDLECAST_MONITOR_URL=http://127.0.0.1:$monitor_port
export CANDLECAST_TRAINER_URLS=http://127.0.0.1:$trainer1_port,http://127.0.0.1:$trainer2_port

if [ -z "$history" ] && [ -z "$replay" ]; then
  history=$root/data/kraken_XBTUSD_1440.csv
  recent=$root/data/kraken_XBTUSD_1440_2024.csv
  # Bounded: a machine without network must not wait long to find out.
  if curl -fsS --connect-timeout 3 --max-time 5 https://api.kraken.com/0/public/Time >/dev/null 2>&1; then
    extra_history=$recent
    say "live: Kraken answers, so history $(file_span "$history") and $(file_span "$recent") from data/," \
      "then Kraken's REST API (its last 720 days top it up)"
  else
    replay=$recent
    say "replay: Kraken did not answer within 5 s, so history $(file_span "$history") from data/, then" \
      "$(file_span "$recent") replayed through the fake Kraken server, a candle every $tick_seconds s"
  fi
fi

say "starting RabbitMQ and PostgreSQL (installing them first if needed)"
scripts/servers.sh start 2>&1 | sed 's/^/    /'
# shellcheck source=/dev/null
source .local/env

say "building the services in release mode (the first build takes a few minutes; log: .local/logs/build.log)"
if ! swift build -c release >"$logs/build.log" 2>&1; then
  grep -E 'error:' "$logs/build.log" | head -20 >&2 || tail -20 "$logs/build.log" >&2
  say "the release build failed: see .local/logs/build.log"
  exit 1
fi
bin=$(swift build -c release --show-bin-path)
export PATH="$bin:$PATH"
say "built ($(elapsed))"

pids=()
stop_all() {
  say "stopping every process this script started"
  rm -f "$root/.local/run.env"
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
  env CANDLECAST_HTTP_PORT="$port" "${credentials[@]}" "$@" "$bin/$name" >"$logs/$name$instance.log" 2>&1 &
  pids+=($!)
}
# The CLI's own diagnostics go to a log file too; on failure its last lines are shown.
cli() {
  if ! candlecast "$@" 2>>"$logs/candlecast.log"; then
    tail -5 "$logs/candlecast.log" >&2
    return 1
  fi
}

ingestor_env=()
if [ -n "$replay" ]; then
  replay_rows=$(grep -c . "$replay")
  # Pairs other than the replayed one are answered from Kraken's recorded bodies (data/kraken_fixtures), so
  # `scripts/candlecast pairs add XBTEUR` works offline too.
  "$bin/fake-kraken" --port "$kraken_port" --replay "$replay" --closed 0 --fixtures "$root/data/kraken_fixtures" \
    >"$logs/fake-kraken.log" 2>&1 &
  pids+=($!)
  ingestor_env=(CANDLECAST_KRAKEN_URL=http://127.0.0.1:$kraken_port CANDLECAST_KRAKEN_POLL_SECONDS=1)
fi

# Where this run's services (and in a replay its fake Kraken) answer, for scripts/candlecast in another shell;
# deleted when this script stops.
{
  for variable in CANDLECAST_INGESTOR_URL CANDLECAST_PREPROCESSOR_URL CANDLECAST_REGISTRY_URL CANDLECAST_PREDICTOR_URL \
    CANDLECAST_MONITOR_URL CANDLECAST_TRAINER_URLS; do
    echo "export $variable=${!variable}"
  done
  [ -z "$replay" ] || echo "export CANDLECAST_KRAKEN_URL=http://127.0.0.1:$kraken_port"
} >"$root/.local/run.env"

say "starting the services (one log file each in .local/logs/)"
# A broker that an earlier version used still has classic queues: they become quorum queues, with their messages,
# before any service declares its own (a no-op when they already are; README, "Scaling out").
if ! cli queues migrate >/dev/null; then
  say "cannot move the broker's queues to quorum queues: see .local/logs/candlecast.log"
  exit 1
fi
start preprocessor "$preprocessor_port" ""
start trainer "$trainer1_port" -1
start trainer "$trainer2_port" -2
start registry "$registry_port" ""
start predictor "$predictor_port" ""
start monitor "$monitor_port" ""
wait_ready() {
  for port in "$@"; do
    for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { say "the service on port $port is not ready; see .local/logs"; exit 1; }
  done
}
wait_ready $preprocessor_port $trainer1_port $trainer2_port $registry_port $predictor_port $monitor_port

for file in "$history" "$extra_history"; do
  [ -n "$file" ] || continue
  say "backfilling $(basename "$file") ($(file_span "$file"); progress in .local/logs/backfill.log)"
  if ! candlecast backfill "$file" >>"$logs/backfill.log" 2>&1; then
    tail -5 "$logs/backfill.log" >&2
    say "the backfill failed: see .local/logs/backfill.log"
    exit 1
  fi
done
# The ingestor starts after the history is in: its first poll of Kraken then tops the history up (one batch of
# the days after it), instead of arriving before it.
start ingestor "$ingestor_port" "" "${ingestor_env[@]}"
wait_ready $ingestor_port
say "all seven processes ready ($(elapsed))"
[ -n "$history" ] || say "waiting for the ingestor's first poll of Kraken's REST API"

say "waiting for the first dataset version"
until curl -fs "$CANDLECAST_PREPROCESSOR_URL/v1/datasets/XBTUSD/1d" | grep -q '"version"'; do sleep 2; done
curl -fs "$CANDLECAST_PREPROCESSOR_URL/v1/datasets/XBTUSD/1d" | python3 -c "
import json, sys, datetime
v = json.load(sys.stdin)['versions'][-1]
# Unix seconds or RFC 3339, whichever the preprocessor writes.
when = lambda t: (datetime.datetime.fromtimestamp(t, datetime.timezone.utc) if isinstance(t, (int, float))
                  else datetime.datetime.fromisoformat(t.replace('Z', '+00:00')))
day = lambda t: when(t).date()
rows, train = v['row_count'], v['training_end']
test = rows - train
print(f\"==> dataset version {v['version']}: {rows} daily candles, {day(v['first_open_time'])} .. {day(v['last_open_time'])}\")
share = f\"the last {v['validation_fraction']:.0%} of them\" if 'validation_fraction' in v else 'their most recent part'
print(f\"    training split: the first {train} candles ({share} validates the models: the lowest validation MASE picks the challenger)\")
test_start = (when(v['last_open_time']) - datetime.timedelta(days=test - 1)).date()
print(f\"    test split: the last {test} candles, {test_start} .. {day(v['last_open_time'])}\")"

# The registry's runs with the validation MASE that ranks them (the lowest is the sweep's challenger).
runs_table() {
  curl -fs "$CANDLECAST_REGISTRY_URL/v1/runs?limit=${1:-10}" | python3 -c "
import json, sys
runs = json.load(sys.stdin)
sweep = runs[0]['sweep_id'] if runs else None
runs = [r for r in runs if r['sweep_id'] == sweep]
fmt = lambda x, f: '-' if x is None else format(x, f)
winkler = lambda d: next((i['winkler'] for i in (d or {}).get('intervals', []) if i['level'] == 0.8), None)
rows = [('run', 'model', 'status', 'trainer', 'batch', 'units', 'valid. MASE', 'test MASE', 'test 80% Winkler', 'test RMSE', 'seconds')]
for r in sorted(runs, key=lambda r: r['id']):
    p, m, v = r.get('params') or {}, r.get('test_metrics') or {}, r.get('validation_metrics') or {}
    lstm = r.get('model', 'lstm') == 'lstm'
    rows.append((str(r['id']), r.get('model', 'lstm'), r['status'], r.get('trainer') or '-', str(p.get('batch_size', '-')) if lstm else '-',
                 str(p.get('units', '-')) if lstm else '-', fmt(v.get('mase'), '.4f'), fmt(m.get('mase'), '.4f'),
                 fmt(winkler(r.get('test_distribution')), ',.0f'), fmt(m.get('rmse'), ',.0f'), fmt(r.get('train_seconds'), '.0f')))
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
for row in rows:
    print('    ' + '  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())"
}

champion=$(curl -fs "$CANDLECAST_REGISTRY_URL/v1/models" | python3 -c "
import json, sys
print(next((str(m['aliases'].get('champion', '')) for m in json.load(sys.stdin) if m['name'] == 'lstm-xbtusd-1d'), ''))")
if [ -n "$champion" ]; then
  say "lstm-xbtusd-1d already has a champion (v$champion) from an earlier run: no need to wait for a sweep"
else
  say "waiting for the sweep: its jobs run on both trainers ($(elapsed))"
  until curl -fs "$CANDLECAST_REGISTRY_URL/v1/runs" | grep -q '"status"'; do sleep 2; done
  # The newest sweep is the one the dataset started; runs of older sweeps do not count.
  sweep_runs() { curl -fs "$CANDLECAST_REGISTRY_URL/v1/runs" | python3 -c "
import json, sys, collections
runs = json.load(sys.stdin); newest = runs[0]['sweep_id']
print(', '.join(f'{n} {s}' for s, n in sorted(collections.Counter(r['status'] for r in runs if r['sweep_id'] == newest).items())))"; }
  while sweep_runs | grep -qE "queued|running"; do
    printf '    %s (%s)\n' "$(sweep_runs)" "$(elapsed)"
    sleep 10
  done
  sleep 2
  say "the sweep's runs ($(elapsed)):"
  runs_table 10

  sweep=$(curl -fs "$CANDLECAST_REGISTRY_URL/v1/runs" | python3 -c "import json, sys; print(json.load(sys.stdin)[0]['sweep_id'])")
  decision=$(curl -fs "$CANDLECAST_REGISTRY_URL/v1/sweeps/$sweep" | python3 -c "
import json, sys
d = json.load(sys.stdin).get('decision') or {}
print(('PROMOTED' if d.get('promoted') else 'REFUSED') + ': ' + str(d.get('reason', 'no decision recorded')))")
  say "promotion gate: $decision"
fi

# The champion as the gate chose it: family, test figures next to the naive baseline's on the same rows.
champion_summary=$(curl -fs "$CANDLECAST_REGISTRY_URL/v1/models/lstm-xbtusd-1d/versions" 2>/dev/null | python3 -c "
import json, sys
versions = json.load(sys.stdin)
v = next((v for v in versions if 'champion' in v.get('aliases', [])), None)
if v is None:
    print('    no champion: the gate refused every candidate (see its decision above); the predictor waits for one')
    sys.exit()
m, n = v.get('test_metrics') or {}, v.get('naive_metrics') or {}
winkler = lambda d, level: next((i for i in (d or {}).get('intervals', []) if i['level'] == level), None)
print(f\"    v{v['version']} ({v.get('model', 'lstm')}): test MASE {m.get('mase', float('nan')):.4f}, RMSE {m.get('rmse', float('nan')):,.0f} USD\"
      f\" (naive RMSE {n.get('rmse', float('nan')):,.0f})\")
for level in (0.8, 0.95):
    a, b = winkler(v.get('test_distribution'), level), winkler(v.get('naive_distribution'), level)
    if a:
        beside = f\" (naive {b['coverage']:.1%}, {b['winkler']:,.0f})\" if b else ''
        print(f\"    {level:.0%} interval: coverage {a['coverage']:.1%}, Winkler {a['winkler']:,.0f} USD{beside}\")
if not v.get('test_distribution'):
    print('    (a model from before intervals: no coverage figures)')
") || champion_summary="    the registry did not answer"
say "the champion the gate chose, on the test split above:"
echo "$champion_summary"

if [ -n "$replay" ]; then
  # The ticker notes how many replayed candles have closed; it ends by itself when this script does.
  echo 0 >"$logs/replay-closed"
  ( while sleep "$tick_seconds" && kill -0 $$ 2>/dev/null; do
      closed=$(curl -fs -X POST "http://127.0.0.1:$kraken_port/control/tick" \
        | python3 -c "import json, sys; print(json.load(sys.stdin)['closed'])") || continue
      echo "$closed" >"$logs/replay-closed.new" && mv "$logs/replay-closed.new" "$logs/replay-closed"
      [ "$closed" -lt "$replay_rows" ] || break
    done ) &
  pids+=($!)
fi
say "waiting for the first forecast"
until curl -fs "$CANDLECAST_PREDICTOR_URL/v1/forecasts/latest?pair=XBTUSD&interval=1d" >/dev/null 2>&1; do sleep 1; done
say "first forecast after $(elapsed) from the start of this script:"
curl -fs "$CANDLECAST_PREDICTOR_URL/v1/forecasts/latest?pair=XBTUSD&interval=1d" | python3 -c "
import json, sys, datetime
f = json.load(sys.stdin)
target = f['target_open_time']
day = (datetime.datetime.fromtimestamp(target, datetime.timezone.utc).date() if isinstance(target, (int, float)) else target[:10])
print(f\"    XBTUSD close of {day}: {f['predicted_close']:,.2f} USD\"
      f\" (last close {f['last_close']:,.2f}; {f['model_name']} v{f['model_version']})\")
ranges = ', '.join(f\"{i['level']:.0%} {i['lower']:,.0f}-{i['upper']:,.0f}\" for i in f.get('intervals') or [])
if ranges:
    print(f\"    range {ranges}; P(close above the last close) {f.get('probability_up', float('nan')):.0%}\")"

if [ -x scripts/candlecast ]; then cli_hint="scripts/candlecast status"; else cli_hint="source .local/env; $bin/candlecast status"; fi
cat <<URLS
    dashboard  http://127.0.0.1:$monitor_port/
    API        http://127.0.0.1:$predictor_port/v1/forecasts/latest?pair=XBTUSD&interval=1d   (docs/predictor-openapi.yaml)
    registry   http://127.0.0.1:$registry_port/v1/models                                     (docs/registry-openapi.yaml)
    metrics    http://127.0.0.1:$monitor_port/metrics (and /metrics on every service's port)
    CLI        $cli_hint
    add a pair scripts/candlecast pairs add XBTEUR   (its own dataset, sweep, champion and forecasts: README, "Adding a pair")
    logs       .local/logs/ (one file per service; servers: scripts/servers.sh status)
URLS
# Only the CLI's own output: each forecast as it is published.
candlecast forecasts tail 2>>"$logs/candlecast.log" > >(sed 's/^/    /') &
pids+=($!)
if [ -z "$replay" ]; then
  say "forecasting each new candle as it closes on Kraken; forecasts as they are published (Ctrl-C stops):"
  wait
  exit 0
fi
say "replaying $(basename "$replay"): a candle closes every $tick_seconds s; forecasts as they are published (Ctrl-C stops):"
until [ "$(cat "$logs/replay-closed" 2>/dev/null || echo 0)" -ge "$replay_rows" ]; do sleep 5; done
first=$(head -1 "$replay" | cut -d, -f1) last=$(tail -1 "$replay" | cut -d, -f1)
replayed_days="from=$(day "$first")&to=$(day $((last + 86400)))"
# The forecast for the day after the replay can never be scored; wait until the monitor has every other score.
summary() { # the monitor's figures for the replayed days, as its dashboard embeds them (JSON, or null)
  curl -fs "$CANDLECAST_MONITOR_URL/?pair=XBTUSD&interval=1d&$replayed_days" | python3 -c "
import re, sys
m = re.search(r'<script type=\"application/json\" id=\"accuracy\">([^<]*)</script>', sys.stdin.read())
print(m.group(1) if m else 'null')"
}
previous=""
for _ in $(seq 1 30); do
  current=$(summary)
  [ "$current" != "$previous" ] || break
  previous=$current
  sleep 3
done
forecasts_json=$(curl -fs "$CANDLECAST_PREDICTOR_URL/v1/forecasts?pair=XBTUSD&interval=1d&$replayed_days&limit=10000" || echo "[]")
made=$(python3 -c "import json, sys; print(len(json.loads(sys.argv[1])))" "$forecasts_json" || echo "?")
# Interval coverage and Winkler over the replayed days, from the predictor's scored forecasts, beside the naive baseline's.
coverage=$(python3 -c "
import json, sys
rows = [f for f in json.loads(sys.argv[1]) if any('hit' in i for i in f.get('intervals') or [])]
if not rows:
    print('not available (no scored forecast carries intervals)')
else:
    parts = []
    for level in (0.8, 0.95):
        its = [i for f in rows for i in f['intervals'] if i['level'] == level and 'hit' in i]
        naive = [i for i in its if 'naive_hit' in i]
        text = f\"{level:.0%} {sum(i['hit'] for i in its) / len(its):.1%} (Winkler {sum(i['winkler'] for i in its) / len(its):,.0f} USD\"
        if naive:
            text += f\"; naive {sum(i['naive_hit'] for i in naive) / len(naive):.1%}, {sum(i['naive_winkler'] for i in naive) / len(naive):,.0f}\"
        parts.append(text + ')')
    print(f'{len(rows)} scored: ' + ', '.join(parts))" "$forecasts_json" || echo "?")
say "the replay of $(basename "$replay") has ended ($(file_span "$replay"), $(elapsed) after the start):"
summary | python3 -c "
import json, sys
a = json.load(sys.stdin) or {}
print('    forecasts made: $made (the predictor\'s, for the replayed days and the day after)')
if a.get('count'):
    mase = a.get('mase')
    verdict = 'beats' if a.get('beats_naive') else 'does not beat'
    print(f\"    scored: {a['count']}; MASE against the naive forecast on the same rows: \"
          f\"{'undefined' if mase is None else format(mase, '.3f')}\")
    print(f\"    (model MAE {a['mae']:,.0f} USD, naive MAE {a['naive_mae']:,.0f} USD: it {verdict} naive)\")
else:
    print('    no forecast has been scored yet (the monitor does not answer, or has not heard the scores)')
print('    interval coverage: $coverage')"
say "still serving (the dashboard, API and metrics above); no more candles will close. Ctrl-C stops."
wait
