#!/usr/bin/env bash
# Reliability scenario 6, load: a 1-minute-interval replay of CANDLES (100000) synthetic XBTUSD candles
# through the fake Kraken server, the ingestor, the preprocessor and the predictor (release build), after
# WARMUP (20000) candles of history and a small champion trained on them. Prints throughput, end-to-end
# latency (the window's last candle stored -> its forecast stored) p50/p99, and samples queue depths and
# resident memory of each service every 5 s into .local/load/samples.csv. A dataset version every 10000 candles
# retrains a small model during the run, as a live system would.
#
#   scripts/bench-load.sh [CANDLES] [OFFERED_PER_SECOND]
set -euo pipefail
candles=${1:-100000}
offered=${2:-600}
warmup=20000
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pipeline-bench.sh
source scripts/pipeline-bench.sh
pipeline_setup load

# A seeded random walk of 1-minute candles from 2024-01-01, in Kraken's OHLCVT format.
python3 - "$warmup" "$candles" "$work" <<'PY'
import random, sys
warmup, candles, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(7)
price, start = 42000.0, 1704067200
with open(f"{work}/history.csv", "w") as history, open(f"{work}/replay.csv", "w") as replay:
    for i in range(warmup + candles):
        open_ = price
        price = max(100.0, price * (1 + random.gauss(0, 0.0008)))
        high, low = max(open_, price) * (1 + abs(random.gauss(0, 0.0002))), min(open_, price) * (1 - abs(random.gauss(0, 0.0002)))
        line = f"{start + 60 * i},{open_:.1f},{high:.1f},{low:.1f},{price:.1f},{random.uniform(0.1, 5):.4f},{random.randint(1, 90)}\n"
        (history if i < warmup else replay).write(line)
PY

pipeline_isolate load
export CANDLECAST_REGISTRY_URL=http://127.0.0.1:18904

"$bin/fake-kraken" --port 18899 --replay "$work/replay.csv" --closed 0 --interval-minutes 1 >"$work/fake-kraken.log" 2>&1 &
pid[fake]=$!
start ingestor ingestor 18901 CANDLECAST_KRAKEN_URL=http://127.0.0.1:18899 CANDLECAST_INGEST_INTERVALS=1m CANDLECAST_KRAKEN_POLL_SECONDS=1
start preprocessor preprocessor 18902 CANDLECAST_DATASET_EVERY=10000
start trainer trainer 18903 CANDLECAST_BLAS_THREADS=2
start registry registry 18904 'CANDLECAST_SWEEP_GRID={"units":[8],"epochs":[2]}'
start predictor predictor 18905
start monitor monitor 18906
for port in 18901 18902 18903 18904 18905 18906; do
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done
done
say "history: $warmup candles, then a champion"
CANDLECAST_LOG_LEVEL=error "$bin/ingestor" backfill "$work/history.csv" --pair XBTUSD --interval 1m >/dev/null
until curl -fs http://127.0.0.1:18904/v1/runs | grep -q '"finished"'; do sleep 1; done
curl -fs -X POST http://127.0.0.1:18904/v1/models/lstm-xbtusd-1m/promote -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"version":1,"reason":"load test"}' >/dev/null || true
until [ "$(psql -Atq "$database_url" -c 'SELECT count(*) FROM predictions.forecasts')" -ge 1 ]; do sleep 1; done

say "replaying $candles candles, $offered offered per second"
echo "seconds,closed_at_kraken,candles_stored,forecasts,queue_preprocessor,queue_predictor_windows,queue_predictor_candles,rss_kb_ingestor,rss_kb_preprocessor,rss_kb_predictor" >"$work/samples.csv"
started=$(date +%s.%N)
( while sleep 1; do curl -fs -X POST "http://127.0.0.1:18899/control/tick?count=$offered" >/dev/null || true; done ) &
ticker=$!
while :; do
  now=$(date +%s.%N)
  read -r stored forecasts < <(psql -Atq -F ' ' "$database_url" -c "SELECT (SELECT count(*) FROM ingest.candles WHERE open_time >= $((1704067200 + 60 * warmup))), (SELECT count(*) FROM predictions.forecasts)")
  closed=$(curl -fs -X POST "http://127.0.0.1:18899/control/tick?count=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["closed"])')
  printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n" "$(awk -v a="$now" -v b="$started" "BEGIN {printf \"%.0f\", a - b}")" "$closed" "$stored" "$forecasts" "$(depth preprocessor.candles)" \
    "$(depth predictor.windows)" "$(depth predictor.candles)" "$(rss ingestor)" "$(rss preprocessor)" "$(rss predictor)" >>"$work/samples.csv"
  [ "$forecasts" -ge $((candles + 1)) ] && break
  sleep 5
done
kill "$ticker" 2>/dev/null || true
finished=$(date +%s.%N)

psql -Atq "$database_url" <<SQL | tee "$work/summary.txt"
WITH latency AS (
  SELECT extract(epoch FROM f.produced_at - c.ingested_at) * 1000 AS ms
  FROM predictions.forecasts f JOIN ingest.candles c
    ON c.pair = f.pair AND c.interval_seconds = f.interval_seconds AND c.open_time = f.window_end_open_time
  WHERE f.target_open_time > $((1704067200 + 60 * warmup)))
SELECT format('forecasts %s, end-to-end latency (candle stored -> forecast stored) p50 %s ms, p99 %s ms, max %s ms',
  count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1)) FROM latency;
SQL
python3 - "$work/samples.csv" "$candles" "$started" "$finished" <<'PY' | tee -a "$work/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
candles, elapsed = int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
print(f"{candles} candles replayed and forecast in {elapsed:.0f} s: {candles / elapsed:.0f} candles/s end to end")
for key in ("queue_preprocessor", "queue_predictor_windows", "queue_predictor_candles"):
    values = [int(r[key] or 0) for r in rows]
    print(f"{key}: max {max(values)}, last {values[-1]}")
for key in ("rss_kb_ingestor", "rss_kb_preprocessor", "rss_kb_predictor"):
    values = [int(r[key] or 0) for r in rows]
    half = values[len(values) // 2:]
    print(f"{key}: first {values[0] / 1024:.0f} MB, max {max(values) / 1024:.0f} MB, max of the second half {max(half) / 1024:.0f} MB, last {values[-1] / 1024:.0f} MB")
PY
say "samples: $work/samples.csv"
