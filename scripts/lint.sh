#!/usr/bin/env bash
# The project's code style, checked (CI runs this from test.sh): swift-format (in the toolchain) with the
# configuration at the root (.swift-format: 4 spaces, 140 columns), and no line over 140 columns even where
# swift-format cannot break one (string literals). Generated code (Shared/*API/Generated) is the generator's.
# `scripts/lint.sh --fix` rewrites the files in place first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.swift' | grep -v '/Generated/')
if [ "${1:-}" = "--fix" ]; then
  swift format format --in-place --parallel "${files[@]}"
fi
status=0
swift format lint --strict --parallel "${files[@]}" || status=1
long=$(awk 'length > 140 { printf "%s:%d: %d columns\n", FILENAME, FNR, length }' "${files[@]}")
if [ -n "$long" ]; then
  echo "$long" >&2
  echo "[lint] lines over 140 columns: $(echo "$long" | wc -l)" >&2
  status=1
fi
[ $status -eq 0 ] && echo "[lint] swift-format clean, no line over 140 columns (${#files[@]} files)" >&2
exit $status
