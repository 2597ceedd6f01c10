#!/usr/bin/env bash
# Issue [forecasts]' results table on protocol BTC-daily-v1, rerunnable: every model kind a sweep produces
# (ForecastEval: the naive-empirical baseline, the LSTM with a point head and with a Gaussian head, each calibrated by
# split conformal on the validation rows), scored on the 1,228 test targets from row 2865, beside the naive forecast on
# the same rows, and the interval anchors computed in the same run: naive + empirical quantiles (the baseline itself)
# and naive + GARCH(1,1)-t (scripts/anchors/garch_intervals.py, PyPI's `arch`).
#
#   scripts/bench-forecasts.sh
#   CANDIDATES=naive-empirical,lstm-gaussian-relu UNITS=64 scripts/bench-forecasts.sh
#
# Knobs: CANDIDATES (all four), UNITS (350), BATCH (32), SEED (42), THREADS (2), WINDOW (14), VENV (~/.venvs/garch).
set -euo pipefail
cd "$(dirname "$0")/.."

CANDIDATES=${CANDIDATES:-naive-empirical,lstm-point-relu,lstm-gaussian-relu,lstm-gaussian-tanh}
UNITS=${UNITS:-350}
BATCH=${BATCH:-32}
SEED=${SEED:-42}
THREADS=${THREADS:-2}
WINDOW=${WINDOW:-14}
VENV=${VENV:-"$HOME/.venvs/garch"}
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import arch" 2>/dev/null; then
    echo "== creating $VENV with arch (PyPI)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet arch
fi

echo "== GARCH(1,1)-t anchor" >&2
"$VENV/bin/python" scripts/anchors/garch_intervals.py data | tee -a "$RESULTS"

echo "== building ForecastEval (release)" >&2
nice -n 10 swift build -c release -j 1 --product ForecastEval >&2
BENCH=$(swift build -c release --show-bin-path)/ForecastEval
echo "== ForecastEval: $CANDIDATES (units $UNITS, batch $BATCH, seed $SEED, window $WINDOW, $THREADS threads)" >&2
"$BENCH" --data data --units "$UNITS" --batch "$BATCH" --seed "$SEED" --threads "$THREADS" --window "$WINDOW" \
    --candidates "$CANDIDATES" | tee -a "$RESULTS"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), family $(grep -m1 'cpu family' /proc/cpuinfo |
    cut -d: -f2 | tr -d ' ') model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(nproc) cores" >&2

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def f(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"
print()
print("| model | RMSE | MAE | MASE | 80% coverage | 80% width | 80% Winkler | 95% coverage | 95% width | 95% Winkler | Brier |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
naive = next((r for r in rows if "naive_rmse" in r), None)
if naive:
    print(f"| naive (tomorrow = today), same rows | {f(naive['naive_rmse'], 1)} | {f(naive['naive_mae'], 1)} | 1.000 "
          + "| - | - | - | - | - | - | - |")
for r in rows:
    print(f"| {r['model']} | {f(r.get('rmse'), 1)} | {f(r.get('mae'), 1)} | {f(r.get('mase'), 3)} "
          + f"| {f(100 * r['coverage_80'], 1)}% | {f(r['width_pct_80'], 2)}% | {f(r['winkler_80'], 0)} "
          + f"| {f(100 * r['coverage_95'], 1)}% | {f(r['width_pct_95'], 2)}% | {f(r['winkler_95'], 0)} | {f(r['brier'], 4)} |")
print()
print("targets: coverage within 3 points of nominal (77-83%, 92-98%); 80% Winkler <= 4,650, 95% <= 7,300; champion MASE <= 1.00")
PY
