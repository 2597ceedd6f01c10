#!/usr/bin/env bash
# Every pair, every minute: PAIRS (200) pairs of 1-minute candles for MINUTES (30) minutes of wall-clock time
# through the fake Kraken server, the ingestor, the preprocessor and the predictor (release builds), with the
# registry, one trainer and the monitor running. Each pair has HISTORY (400) candles of history and its own
# small model: a sweep per pair at its first dataset version, its LSTM promoted where the sweep registered one (on a
# random walk the sweep often registers only its naive baseline, which then serves).
# Then, once a minute, the fake closes one more candle of every pair at once, as Kraken does at the
# top of a minute; the ingestor polls each pair every second.
#
# Prints, over the PAIRS x MINUTES candles: the latency from the candle's close at the fake (the tick) and from
# its row stored to its forecast stored (p50, p99, max), forecasts missing or twice, the CPU time and resident memory of every
# service and the queue depths, sampled every 5 s into .local/pairs/samples.csv.
#
#   scripts/bench-pairs.sh [PAIRS] [MINUTES]
set -euo pipefail
pairs=${1:-200}
minutes=${2:-30}
history=400
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pipeline-bench.sh
source scripts/pipeline-bench.sh
pipeline_setup pairs
mkdir -p "$work/history" "$work/replay"

# A seeded random walk per pair from 2024-01-01, in Kraken's OHLCVT format: history, then the live minutes.
python3 - "$pairs" "$history" "$minutes" "$work" <<'PY'
import random, sys
pairs, history, minutes, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
start = 1704067200
for p in range(1, pairs + 1):
    rng = random.Random(p)
    price = rng.uniform(1, 50000)
    name = f"P{p:03d}USD"
    with open(f"{work}/history/{name}.csv", "w") as h, open(f"{work}/replay/{name}.csv", "w") as r:
        for i in range(history + minutes + 5):
            open_ = price
            price = max(0.01, price * (1 + rng.gauss(0, 0.001)))
            high, low = max(open_, price) * 1.0002, min(open_, price) * 0.9998
            line = f"{start + 60 * i},{open_:.4f},{high:.4f},{low:.4f},{price:.4f},{rng.uniform(0.1, 5):.4f},{rng.randint(1, 90)}\n"
            (h if i < history else r).write(line)
PY
pair_list=$(for p in $(seq 1 "$pairs"); do printf 'P%03dUSD,' "$p"; done)
pair_list=${pair_list%,}

pipeline_isolate pairs
export CANDLECAST_REGISTRY_URL=http://127.0.0.1:18914

"$bin/fake-kraken" --port 18909 --replay-dir "$work/replay" --interval-minutes 1 >"$work/fake-kraken.log" 2>&1 &
pid[fake]=$!
start ingestor ingestor 18911 CANDLECAST_KRAKEN_URL=http://127.0.0.1:18909 CANDLECAST_INGEST_PAIRS="$pair_list" \
  CANDLECAST_INGEST_INTERVALS=1m CANDLECAST_KRAKEN_POLL_SECONDS=1
# No new dataset version during the run: the minutes measure forecasting, not retraining.
start preprocessor preprocessor 18912 CANDLECAST_DATASET_EVERY=100000
start trainer trainer 18913 CANDLECAST_BLAS_THREADS=1
start registry registry 18914 'CANDLECAST_SWEEP_GRID={"units":[4],"epochs":[1]}'
start predictor predictor 18915
start monitor monitor 18916
for port in 18911 18912 18913 18914 18915 18916; do
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done
done
# The services first: their queues exist before the history's events are published.
say "history: $pairs pairs x $history candles"
for p in $(seq 1 "$pairs"); do
  name=$(printf 'P%03dUSD' "$p")
  CANDLECAST_LOG_LEVEL=error "$bin/ingestor" backfill "$work/history/$name.csv" --pair "$name" --interval 1m >/dev/null
done
say "a model per pair"
until [ "$(sql "SELECT count(DISTINCT model_name) FROM registry.model_versions")" -ge "$pairs" ] &&
  [ "$(sql "SELECT count(*) FROM registry.runs WHERE status IN ('queued', 'running')")" = 0 ] &&
  [ "$(sql "SELECT count(DISTINCT model_name) FROM registry.promotion_decisions")" -ge "$pairs" ]; do sleep 2; done
# On a random walk the gate mostly keeps the naive baseline: every LSTM the sweeps registered is promoted.
for line in $(sql "SELECT v.model_name || ':' || v.version FROM registry.model_versions v JOIN registry.runs r ON r.id = v.run_id WHERE r.model = 'lstm'"); do
  curl -fs -X POST "http://127.0.0.1:18914/v1/models/${line%%:*}/promote" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "{\"version\":${line##*:},\"reason\":\"pairs benchmark\"}" >/dev/null || say "cannot promote $line"
done
until [ "$(sql "SELECT count(DISTINCT pair) FROM predictions.forecasts")" -ge "$pairs" ]; do sleep 1; done
sleep 5  # the promotions reach the predictor
champions=$(sql "SELECT count(*) FROM registry.aliases a JOIN registry.model_versions v USING (model_name, version) JOIN registry.runs r ON r.id = v.run_id WHERE a.alias = 'champion' AND r.model = 'lstm'")
say "$champions LSTM champions, every pair forecast from its history; $minutes minutes of live candles"

first_live=$((1704067200 + 60 * history))
echo "seconds,candles_live,forecasts_live,queue_preprocessor,queue_predictor_windows,queue_predictor_candles,rss_kb_fake,rss_kb_ingestor,rss_kb_preprocessor,rss_kb_predictor,rss_kb_registry,rss_kb_trainer,rss_kb_monitor" >"$work/samples.csv"
: >"$work/ticks.csv"
roles="fake ingestor preprocessor predictor registry trainer monitor"
declare -A cpu_before
for role in $roles; do cpu_before[$role]=$(cpu "$role"); done
servers_before=$(cpu_servers)
started=$(date +%s.%N)
# Tick k (1-based) closes the live candle that opens at first_live + 60 (k - 1) for every pair.
(
  for k in $(seq 1 "$minutes"); do
    echo "$k,$(date +%s.%N)" >>"$work/ticks.csv"
    curl -fs -X POST "http://127.0.0.1:18909/control/tick?count=1" >/dev/null || true
    sleep 60
  done
) &
ticker=$!
expected=$((pairs * minutes))
deadline=$(($(date +%s) + 60 * minutes + 120))
while :; do
  read -r stored forecasts < <(psql -Atq -F ' ' "$database_url" -c "SELECT (SELECT count(*) FROM ingest.candles WHERE open_time >= $first_live), (SELECT count(*) FROM predictions.forecasts WHERE window_end_open_time >= $first_live)")
  printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n" "$(awk -v a="$(date +%s.%N)" -v b="$started" 'BEGIN {printf "%.0f", a - b}')" "$stored" "$forecasts" \
    "$(depth preprocessor.candles)" "$(depth predictor.windows)" "$(depth predictor.candles)" "$(rss fake)" "$(rss ingestor)" "$(rss preprocessor)" \
    "$(rss predictor)" "$(rss registry)" "$(rss trainer)" "$(rss monitor)" >>"$work/samples.csv"
  if [ "$forecasts" -ge "$expected" ] && ! kill -0 "$ticker" 2>/dev/null; then break; fi
  [ "$(date +%s)" -gt "$deadline" ] && { say "deadline passed with $forecasts of $expected forecasts"; break; }
  sleep 5
done
kill "$ticker" 2>/dev/null || true
elapsed=$(awk -v a="$(date +%s.%N)" -v b="$started" 'BEGIN {print a - b}')
: >"$work/cpu.txt"
for role in $roles; do
  awk -v r="$role" -v a="$(cpu "$role")" -v b="${cpu_before[$role]}" -v t="$elapsed" \
    'BEGIN {printf "CPU %s: %.1f s, %.1f%% of one core\n", r, a - b, 100 * (a - b) / t}' >>"$work/cpu.txt"
done
awk -v a="$(cpu_servers)" -v b="$servers_before" -v t="$elapsed" \
  'BEGIN {printf "CPU PostgreSQL + RabbitMQ: %.0f s, %.1f%% of one core\n", a - b, 100 * (a - b) / t}' >>"$work/cpu.txt"

psql -Atq -F ',' "$database_url" -c "
  SELECT f.pair, f.window_end_open_time, extract(epoch FROM f.produced_at), extract(epoch FROM c.ingested_at)
  FROM predictions.forecasts f JOIN ingest.candles c
    ON c.pair = f.pair AND c.interval_seconds = f.interval_seconds AND c.open_time = f.window_end_open_time
  WHERE f.window_end_open_time >= $first_live" >"$work/forecasts.csv"
python3 - "$work" "$pairs" "$minutes" "$first_live" <<'PY' | tee "$work/summary.txt"
import csv, collections, sys
work, pairs, minutes, first_live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ticks = {int(k): float(t) for k, t in csv.reader(open(f"{work}/ticks.csv"))}
rows = list(csv.reader(open(f"{work}/forecasts.csv")))
count = collections.Counter((p, int(t)) for p, t, _, _ in rows)
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000
from_close, from_stored = [], []
for pair, end, produced, ingested in rows:
    tick = ticks.get((int(end) - first_live) // 60 + 1)
    if tick is not None:
        from_close.append(float(produced) - tick)
    from_stored.append(float(produced) - float(ingested))
expected = pairs * minutes
print(f"{pairs} pairs x {minutes} minutes = {expected} live candles: {len(count)} forecast, {expected - len(count)} missing, "
      f"{sum(1 for c in count.values() if c > 1)} forecast twice")
for name, values in (("close at the fake -> forecast stored", from_close), ("candle stored -> forecast stored", from_stored)):
    print(f"{name}: p50 {pct(values, 0.5):.0f} ms, p99 {pct(values, 0.99):.0f} ms, max {max(values) * 1000:.0f} ms")
samples = list(csv.DictReader(open(f"{work}/samples.csv")))
for key in ("queue_preprocessor", "queue_predictor_windows", "queue_predictor_candles"):
    values = [int(r[key] or 0) for r in samples]
    print(f"{key}: max {max(values)}, last {values[-1]}")
for key in [k for k in samples[0] if k.startswith("rss_kb_")]:
    values = [int(r[key] or 0) for r in samples]
    print(f"resident memory {key[7:]}: first {values[0] / 1024:.0f} MB, max {max(values) / 1024:.0f} MB, last {values[-1] / 1024:.0f} MB")
PY
cat "$work/cpu.txt"
say "samples: $work/samples.csv"
