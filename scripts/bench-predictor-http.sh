#!/usr/bin/env bash
# Predictor HTTP throughput: GET /v1/forecasts/latest with wrk (1 thread, 32 connections, 10 s), beside the
# old system's FastAPI shape (../shared/anchors/fastapi_latest.py, uvicorn, one worker) in the same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${ANCHOR_VENV:-$HOME/.venvs/anchors}
duration=${DURATION:-10s}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import fastapi, uvicorn" 2>/dev/null || "$venv/bin/pip" install -q fastapi uvicorn
swift build -c release --product predictor 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

export PGPASSWORD; PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
port=${CANDLECAST_PG_PORT:-55432}
database=candlecast_bench_predictor
psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
export CANDLECAST_DATABASE_URL="${CANDLECAST_DATABASE_URL%/*}/$database" CANDLECAST_LOG_LEVEL=warning CANDLECAST_HTTP_PORT=18701
"$bin/predictor" > .local/bench-predictor.log 2>&1 & predictor=$!
(cd ../shared/anchors && exec "$venv/bin/uvicorn" fastapi_latest:app --port 8799 --log-level warning) & anchor=$!
trap 'kill $predictor $anchor 2>/dev/null || true; psql -q -h 127.0.0.1 -p "$port" -U candlecast -d candlecast -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"' EXIT
until curl -fs http://127.0.0.1:18701/readyz >/dev/null 2>&1; do sleep 0.2; done
# The same forecast the anchor serves, stored as the predictor would, then the predictor restarted to load it.
psql -q -h 127.0.0.1 -p "$port" -U candlecast -d "$database" -c "INSERT INTO predictions.forecasts (pair, interval_seconds, target_open_time, model_name, model_version, dataset_version, window_end_open_time, predicted_close, last_close, stale, produced_at) VALUES ('XBTUSD', 86400, 1735689600, 'lstm-xbtusd-1d', 7, 13, 1735603200, 93712.4, 93429.2, false, '2024-12-31T00:00:05Z')"
kill -TERM $predictor; wait $predictor || true
"$bin/predictor" > .local/bench-predictor.log 2>&1 & predictor=$!
until curl -fs http://127.0.0.1:18701/readyz >/dev/null 2>&1 && curl -fs http://127.0.0.1:8799/v1/forecasts/latest >/dev/null 2>&1; do sleep 0.2; done
curl -fs 'http://127.0.0.1:18701/v1/forecasts/latest?pair=XBTUSD&interval=1d'; echo

echo "== FastAPI anchor"; wrk -t1 -c32 -d"$duration" --latency 'http://127.0.0.1:8799/v1/forecasts/latest?pair=XBTUSD' | tee .local/wrk-anchor.txt | grep -E "Requests/sec|50%|99%"
echo "== Candlecast predictor"; wrk -t1 -c32 -d"$duration" --latency 'http://127.0.0.1:18701/v1/forecasts/latest?pair=XBTUSD&interval=1d' | tee .local/wrk-ours.txt | grep -E "Requests/sec|50%|99%"
python3 - <<'PY'
import re
def rps(path): return float(re.search(r"Requests/sec:\s+([\d.]+)", open(path).read()).group(1))
a, o = rps(".local/wrk-anchor.txt"), rps(".local/wrk-ours.txt")
print(f"latest forecast, 32 connections: predictor {o:,.0f} req/s vs FastAPI {a:,.0f} req/s = {o / a:.1f}x (target >= 10x)")
PY
