#!/usr/bin/env bash
# Fuzzes Candlecast's parsers of outside bytes with libFuzzer (in the Swift toolchain): every message payload
# through EnvelopeCodec.decode with varied properties and headers (`envelope`) and from its sample message
# with edge-case field values (`payload-fields`), Kraken REST bodies
# (`kraken-body`), OHLCVT history rows (`csv-row`), model files, broker URLs and the binary COPY encoding of
# decimals (`numeric-field`); see Tests/FuzzTargets.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]      (default 60 s, all targets)
#
# Seeds come from the real data in data/ (the contract's sample messages, the recorded Kraken bodies, the
# Kraken history files) plus Tests/FuzzCorpus/<target>/, the committed regression inputs. The growing corpus
# stays in .build-fuzz/corpus (git-ignored). An input that crashes (or hangs, or runs out of memory) is copied
# to Tests/FuzzCorpus/<target>/, which the FuzzTests suite replays, and the script exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope payload-fields kraken-body csv-row model-file broker-url numeric-field)
scratch=.build-fuzz

started=$SECONDS
# -parse-as-library: Tests/Fuzz has no top-level code when FUZZING; release: checks stay on (-O is not -Ounchecked).
mkdir -p "$scratch"
if ! swift build --product Fuzz --scratch-path "$scratch" -c release \
  -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING -Xswiftc -parse-as-library >"$scratch/fuzz-build.log" 2>&1; then
  grep -E "error" "$scratch/fuzz-build.log" | head -20 >&2 || tail -20 "$scratch/fuzz-build.log" >&2
  echo "[fuzz] the fuzz build failed (log: $scratch/fuzz-build.log)" >&2
  exit 2
fi
binary="$scratch/release/Fuzz"
echo "[fuzz] built in $((SECONDS - started)) s" >&2

rm -rf "$scratch/seeds"
CANDLECAST_FUZZ_SEEDS="$scratch/seeds" CANDLECAST_FUZZ_DATA=data "$binary" >&2

failed=()
summary="$scratch/fuzz-summary.txt"
: >"$summary"
for target in "${targets[@]}"; do
  corpus="$scratch/corpus/$target"
  artifacts="$scratch/artifacts/$target"
  regressions="Tests/FuzzCorpus/$target"
  mkdir -p "$corpus" "$artifacts" "$regressions"
  rm -f "$artifacts"/*
  log="$scratch/fuzz-$target.log"
  status=0
  # SWIFT_BACKTRACE=enable=no: the Swift backtracer would otherwise take the trap before libFuzzer saves the input.
  CANDLECAST_FUZZ_TARGET="$target" SWIFT_BACKTRACE=enable=no "$binary" \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "$scratch/seeds/$target" "$regressions" >"$log" 2>&1 || status=$?
  executions=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  coverage=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  crashes=0
  for input in "$artifacts"/*; do
    [ -f "$input" ] || continue
    crashes=$((crashes + 1))
    cp "$input" "$regressions/"
    echo "[fuzz] $target: crashing input saved as $regressions/$(basename "$input")" >&2
  done
  line="fuzz $target: $executions executions in $seconds s, coverage $coverage, corpus $(find "$corpus" -type f | wc -l), crashes $crashes"
  echo "$line" | tee -a "$summary" >&2
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed+=("$target")
    grep -a -E "Fatal error|SUMMARY|ERROR: libFuzzer" "$log" | head -5 >&2 || true
    echo "[fuzz] $target: the whole log is $log" >&2
  fi
done
echo "[fuzz] done in $((SECONDS - started)) s" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "[fuzz] crashes in: ${failed[*]} (inputs in Tests/FuzzCorpus/; replay: swift run Fuzz replay TARGET FILE)" >&2
  exit 1
fi
