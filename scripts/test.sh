#!/usr/bin/env bash
# Runs Candlecast's whole test suite against real RabbitMQ and PostgreSQL servers, which it installs
# (apt) and starts locally if needed (scripts/servers.sh). Extra arguments go to `swift test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env

# The published API documents must stay valid OpenAPI (openapi-spec-validator from PyPI).
python3 -c "import openapi_spec_validator" 2>/dev/null || python3 -m pip install -q openapi-spec-validator pyyaml
python3 - <<'PY'
import sys, yaml
from openapi_spec_validator import validate
for path in ["docs/registry-openapi.yaml", "docs/predictor-openapi.yaml"]:
    validate(yaml.safe_load(open(path)))
    print(f"OpenAPI document valid: {path}", file=sys.stderr)
PY

swift build --build-tests
# Serial: some tests restart the broker or the database, which would disturb tests running beside them.
swift test --skip-build --no-parallel "$@"
