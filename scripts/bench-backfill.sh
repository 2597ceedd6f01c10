#!/usr/bin/env bash
# Backfill benchmark: `ingestor backfill` (validation, binary COPY, rejected rows, progress, summary events)
# against `psql \copy` of the same file into a bare table with numeric columns and a primary key, in the same
# run on the same server. The file has 1-minute volume: the real XBTUSD daily series repeated with 1-minute
# timestamps. Usage: scripts/bench-backfill.sh [rows] (default 1,000,000). INGESTOR=path runs another build of
# the ingestor instead of this tree's release build (to compare two builds against the same anchor).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
swift build -c release --product ingestor 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

mkdir -p .local/bench
file=.local/bench/xbtusd_1m_$rows.csv
if [ ! -s "$file" ]; then
  python3 - "$rows" "$file" <<'PY'
import sys
rows, out = int(sys.argv[1]), sys.argv[2]
series = []
for name in ["data/kraken_XBTUSD_1440.csv", "data/kraken_XBTUSD_1440_2024.csv"]:
    series += [line.rstrip("\n").split(",", 1)[1] for line in open(name)]
start = 1577836800  # 2020-01-01T00:00Z: every 1-minute candle of the file has closed
with open(out, "w") as f:
    for i in range(rows):
        f.write(f"{start + 60 * i},{series[i % len(series)]}\n")
PY
fi

database=candlecast_bench_backfill
export PGPASSWORD; PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
psql_main() { psql -q -h 127.0.0.1 -p "${CANDLECAST_PG_PORT:-55432}" -U candlecast -d candlecast -v ON_ERROR_STOP=1 "$@"; }
psql_bench() { psql -q -h 127.0.0.1 -p "${CANDLECAST_PG_PORT:-55432}" -U candlecast -d "$database" -v ON_ERROR_STOP=1 "$@"; }
# An earlier run's ingestor connection may still be closing (another role's: FORCE cannot end it): retry.
for _ in 1 2 3 4 5; do psql_main -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" 2>/dev/null && break; sleep 1; done
psql_main -c "CREATE DATABASE $database"

psql_bench -c "CREATE TABLE copy_anchor (open_time bigint PRIMARY KEY, open numeric, high numeric, low numeric, close numeric, volume numeric, trades integer)"
start=$(date +%s.%N)
psql_bench -c "\\copy copy_anchor FROM '$file' WITH (FORMAT csv)"
copy_s=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
CANDLECAST_DATABASE_URL="${CANDLECAST_DATABASE_URL%/*}/$database" CANDLECAST_LOG_LEVEL=warning \
  "${INGESTOR:-$bin/ingestor}" backfill "$file" --pair XBTUSD --interval 1m
ours_s=$(echo "$(date +%s.%N) - $start" | bc)
stored=$(psql_bench -tA -c "SELECT count(*) FROM ingest.candles")

python3 - "$rows" "$copy_s" "$ours_s" "$stored" <<'PY'
import sys
rows, copy_s, ours_s, stored = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"psql \\copy:        {rows} rows in {copy_s:.2f} s = {rows / copy_s:,.0f} rows/s")
print(f"ingestor backfill: {stored} rows in {ours_s:.2f} s = {rows / ours_s:,.0f} rows/s ({ours_s / copy_s:.2f}x the time of \\copy)")
PY
# A connection of the ingestor's may still be closing: the next run drops the database first anyway.
psql_main -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" 2>/dev/null || true
