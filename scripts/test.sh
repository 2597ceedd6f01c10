#!/usr/bin/env bash
# Runs Candlecast's whole test suite against real RabbitMQ and PostgreSQL servers, which it installs
# (apt) and starts locally if needed (scripts/servers.sh). Extra arguments go to `swift test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env

swift build --build-tests
# Serial: some tests restart the broker or the database, which would disturb tests running beside them.
swift test --skip-build --no-parallel "$@"
