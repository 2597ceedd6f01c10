#!/usr/bin/env bash
# Turns each OpenAPI document in docs/ into the Swift types, server protocol and client its module builds on
# (Apple's swift-openapi-generator, built once into .build-openapi from Tools/OpenAPIGenerator). The generated
# code is committed, so the services' build never runs the generator; `--check` regenerates into a scratch folder
# and fails when the committed code no longer matches its document (test.sh runs it in CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# document -> module folder (its openapi-generator-config.yaml says what to generate)
documents=(
  "docs/registry-openapi.yaml:Shared/RegistryAPI"
  "docs/predictor-openapi.yaml:Shared/PredictorAPI"
  "docs/preprocessor-openapi.yaml:Shared/PreprocessorAPI"
  "docs/monitor-openapi.yaml:Shared/MonitorAPI"
)

check=false
[ "${1:-}" = "--check" ] && check=true

swift build --package-path Tools/OpenAPIGenerator --scratch-path .build-openapi -c release \
  --product swift-openapi-generator >/dev/null
generator=.build-openapi/release/swift-openapi-generator

# The generator describes its configuration on every run: shown only when it fails.
generate() {
  local log
  log=$(mktemp)
  if ! "$generator" generate --config "$1/openapi-generator-config.yaml" --output-directory "$2" "$3" >"$log" 2>&1; then
    grep -i 'error' "$log" >&2 || cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

status=0
for entry in "${documents[@]}"; do
  document=${entry%%:*}
  module=${entry#*:}
  [ -f "$document" ] || continue
  if $check; then
    scratch=$(mktemp -d)
    generate "$module" "$scratch" "$document"
    if ! diff -r "$scratch" "$module/Generated" >/dev/null; then
      echo "[openapi] $module/Generated is out of date with $document: run scripts/openapi-generate.sh" >&2
      status=1
    else
      echo "[openapi] $module/Generated matches $document" >&2
    fi
    rm -rf "$scratch"
  else
    mkdir -p "$module/Generated"
    generate "$module" "$module/Generated" "$document"
    echo "[openapi] generated $module/Generated from $document" >&2
  fi
done
exit $status
