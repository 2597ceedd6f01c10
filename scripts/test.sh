#!/usr/bin/env bash
# Runs Candlecast's whole test suite against real RabbitMQ and PostgreSQL servers, which it installs
# (apt) and starts locally if needed (scripts/servers.sh). Extra arguments go to `swift test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/servers.sh start
# The scaling-out tests (ScaleOutTests) also need a three-node RabbitMQ cluster and a PostgreSQL primary with a
# synchronous standby, on loopback beside the servers above. A pair whose standby an earlier run promoted is made anew.
scripts/servers.sh cluster-start
scripts/servers.sh pg-pair-start || scripts/servers.sh pg-pair-reset
# shellcheck source=/dev/null
source .local/env

# What the tests drive besides the servers: promtool (Prometheus config, rules, /metrics), headless
# Chromium (the dashboard), docker-compose (the compose file is validated, not run) and pika (the example).
test_packages=(prometheus chromium docker-compose fonts-dejavu-core)
missing=()
for package in "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "[test] installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # policy-rc.d 101: Prometheus must not start a system-wide server.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi

# The tests get a RabbitMQ virtual host of their own, new on every run, so that they never meet the queues of
# a system started with scripts/run.sh on the same broker (suites that start a whole system make their own).
scripts/servers.sh vhost-delete candlecast-tests 2>/dev/null || true
scripts/servers.sh vhost-add candlecast-tests
export CANDLECAST_AMQP_URL="${CANDLECAST_AMQP_URL%/}/candlecast-tests"

# The published API documents must stay valid OpenAPI (openapi-spec-validator from PyPI).
python3 -c "import openapi_spec_validator, yaml, pika" 2>/dev/null || python3 -m pip install -q openapi-spec-validator pyyaml pika
python3 - <<'PY'
import glob, sys, yaml
from openapi_spec_validator import validate
for path in sorted(glob.glob("docs/*-openapi.yaml")):
    validate(yaml.safe_load(open(path)))
    print(f"OpenAPI document valid: {path}", file=sys.stderr)
PY

# Code style (swift-format with .swift-format, at most 140 columns) and the generated OpenAPI code in step with
# its documents (the generator is built once into .build-openapi, about 2.5 minutes on 2 cores).
scripts/lint.sh
scripts/openapi-generate.sh --check

swift build --build-tests
# OpenBLAS picks its kernel when it loads; the test runner cannot restart itself as the services do
# (BLASKernel.correctingExecutable), so the correction for a CPU this OpenBLAS does not know is exported here.
blas_coretype=$(.build/debug/blas-kernel --coretype)
if [ -n "$blas_coretype" ] && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$blas_coretype
fi
echo "[test] $(.build/debug/blas-kernel)" >&2
# schemathesis against the real services built above: every OpenAPI document in docs/, with and without the
# registry's token; any failure, or a service down afterwards, fails the run (scripts/attack-http.sh).
scripts/attack-http.sh
# libFuzzer on every message decoder and the Kraken body and CSV row parsers, 30 s per target (4 targets;
# with a clean fuzz build about 3 minutes): a crash fails the run, its input kept in Tests/FuzzCorpus/ (scripts/fuzz.sh).
# CANDLECAST_FUZZ_SECONDS sets the time per target; 0 skips fuzzing.
[ "${CANDLECAST_FUZZ_SECONDS:-30}" = 0 ] || scripts/fuzz.sh "${CANDLECAST_FUZZ_SECONDS:-30}"
# Serial: some tests restart the broker or the database, which would disturb tests running beside them.
swift test --skip-build --no-parallel "$@"
