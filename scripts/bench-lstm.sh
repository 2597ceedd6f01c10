#!/usr/bin/env bash
# Runs the anchors (Keras, and PyTorch with its fused tanh nn.LSTM and its relu cell written step by step) and
# Candlecast's LSTM (LSTMBench) on protocol BTC-daily-v1 in the same run, prints every JSON line, then the ratios. Run from anywhere; paths are relative to the repository root.
#
#   scripts/bench-lstm.sh
#   SEEDS="42" TARGETS="scaled-difference" SKIP_ANCHOR=1 scripts/bench-lstm.sh
#
# Knobs (environment): SEEDS (42 43 44), TARGETS (next-scaled-close scaled-difference log-return),
# UNITS (350), BATCH (32), THREADS (2, training threads, the anchors' too), SKIP_ANCHOR=1 (no anchor run),
# TORCH_ACTS ("tanh relu", the PyTorch anchors to run),
# VENV (~/.venvs/anchors), and extra LSTMBench flags per target: NEXT_SCALED_CLOSE_ARGS ("--lr 0.005":
# at Keras's 1e-3 this target's validation loss stalls after an epoch or two and the test RMSE varies
# from 1.5k to 2.7k with the seed, for Keras too), CHANGE_TARGET_ARGS ("", the Keras settings).
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-"42 43 44"}
TARGETS=${TARGETS:-"next-scaled-close scaled-difference log-return"}
UNITS=${UNITS:-350}
BATCH=${BATCH:-32}
THREADS=${THREADS:-2}
NEXT_SCALED_CLOSE_ARGS=${NEXT_SCALED_CLOSE_ARGS-"--lr 0.005"}
CHANGE_TARGET_ARGS=${CHANGE_TARGET_ARGS-}
VENV=${VENV:-"$HOME/.venvs/anchors"}
DATA=data
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

TORCH_ACTS=${TORCH_ACTS-"tanh relu"}
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import tensorflow, torch" 2>/dev/null; then
    echo "== creating $VENV with tensorflow-cpu and torch (a few minutes)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet tensorflow-cpu torch
fi

echo "== building LSTMBench (release)" >&2
nice -n 10 swift build -c release -j 1 --product LSTMBench >&2
BENCH=$(swift build -c release --show-bin-path)/LSTMBench

if [[ "${SKIP_ANCHOR:-0}" != 1 ]]; then
    echo "== Keras anchor (units $UNITS, batch $BATCH, seed 42)" >&2
    anchor=$(UNITS=$UNITS BATCH=$BATCH SEED=42 DATA=$DATA "$VENV/bin/python" ../shared/anchors/keras_lstm.py | tail -n 1)
    echo "$anchor"
    echo "anchor $anchor" >> "$RESULTS"
    for act in $TORCH_ACTS; do
        echo "== PyTorch anchor, $act (units $UNITS, batch $BATCH, seed 42, $THREADS threads)" >&2
        torch_anchor=$(ACT=$act UNITS=$UNITS BATCH=$BATCH SEED=42 THREADS=$THREADS DATA=$DATA \
            "$VENV/bin/python" ../shared/anchors/torch_lstm.py | tail -n 1)
        echo "$torch_anchor"
        echo "torch-$act $torch_anchor" >> "$RESULTS"
    done
fi

for target in $TARGETS; do
    if [[ "$target" == next-scaled-close ]]; then args=$NEXT_SCALED_CLOSE_ARGS; else args=$CHANGE_TARGET_ARGS; fi
    for seed in $SEEDS; do
        echo "== LSTMBench target $target seed $seed $args" >&2
        # shellcheck disable=SC2086 # args is a list of flags
        line=$("$BENCH" --units "$UNITS" --batch "$BATCH" --seed "$seed" --target "$target" --threads "$THREADS" \
            --data "$DATA" $args)
        echo "$line"
        echo "ours $line" >> "$RESULTS"
    done
done

"$VENV/bin/python" - "$RESULTS" <<'PY'
import json, sys
from collections import defaultdict
anchor, torch_anchors, ours = None, {}, defaultdict(list)
for line in open(sys.argv[1]):
    kind, payload = line.split(" ", 1)
    record = json.loads(payload)
    if kind == "anchor":
        anchor = record
    elif kind.startswith("torch-"):
        torch_anchors[kind[len("torch-"):]] = record
    else:
        ours[record["target"]].append(record)
mean = lambda values: sum(values) / len(values)
print()
print(f"{'model':<34}{'samples/s':>10}{'s/epoch':>9}{'epochs':>8}{'p50 ms':>9}{'p99 ms':>9}{'RMSE':>9}{'MAE':>9}{'MAPE%':>7}{'MASE':>7}")
def row(name, runs):
    print(f"{name:<34}{mean([r['train_samples_per_s'] for r in runs]):>10.0f}{mean([r['s_per_epoch'] for r in runs]):>9.2f}"
          f"{mean([r['epochs_run'] for r in runs]):>8.1f}{mean([r['single_forecast_ms_p50'] for r in runs]):>9.3f}"
          f"{mean([r['single_forecast_ms_p99'] for r in runs]):>9.3f}{mean([r['lstm']['rmse'] for r in runs]):>9.0f}"
          f"{mean([r['lstm']['mae'] for r in runs]):>9.0f}{mean([r['lstm']['mape'] for r in runs]):>7.2f}{mean([r['lstm']['mase'] for r in runs]):>7.2f}")
if anchor:
    row("keras anchor (seed 42)", [anchor])
for act, record in torch_anchors.items():
    row(f"torch {act} {'fused nn.LSTM' if act == 'tanh' else 'step by step'} (seed 42)", [record])
for target, runs in ours.items():
    row(f"candlecast {target} (mean of {len(runs)})", runs)
    for r in runs:
        row(f"  seed {r['seed']}", [r])
naive = (anchor or next(iter(ours.values()))[0])["naive"]
print(f"{'naive (tomorrow = today)':<34}{'':>10}{'':>9}{'':>8}{'':>9}{'':>9}{naive['rmse']:>9.0f}{naive['mae']:>9.0f}{naive['mape']:>7.2f}{naive['mase']:>7.2f}")
if anchor:
    print()
    for target, runs in ours.items():
        throughput = mean([r["train_samples_per_s"] for r in runs]) / anchor["train_samples_per_s"]
        rmse = mean([r["lstm"]["rmse"] for r in runs])
        p99 = max(r["single_forecast_ms_p99"] for r in runs)
        print(f"{target}: throughput {throughput:.2f}x anchor (goal >= 2), RMSE {rmse:.0f} vs anchor {anchor['lstm']['rmse']:.0f}"
              f" ({rmse / anchor['lstm']['rmse']:.3f}x, goal <= 1), MASE {mean([r['lstm']['mase'] for r in runs]):.3f}"
              f" vs anchor {anchor['lstm']['mase']:.3f}, worst single-forecast p99 {p99:.3f} ms (goal < 0.5)")
        for act, record in torch_anchors.items():
            print(f"  against torch {act}: throughput {mean([r['train_samples_per_s'] for r in runs]) / record['train_samples_per_s']:.2f}x"
                  f" (goal >= 1 for the fused tanh), single forecast p99 {p99:.3f} ms vs {record['single_forecast_ms_p99']:.3f} ms")
PY
