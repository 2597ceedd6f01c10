#!/usr/bin/env bash
# Broker benchmark: Candlecast's publisher and consumer (rabbitmq-c) beside the pika anchor
# (../shared/anchors/pika_anchor.py), in the same run on the same broker, with the ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
anchors=../shared/anchors
venv=${ANCHOR_VENV:-$HOME/.venvs/anchors}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import pika" 2>/dev/null || "$venv/bin/pip" install -q pika
swift build -c release --product BrokerBench 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

echo "pika anchor:" >&2
pika=$("$venv/bin/python" "$anchors/pika_anchor.py")
echo "$pika"
echo "candlecast (rabbitmq-c):" >&2
ours=$("$bin/BrokerBench")
echo "$ours"
python3 - "$pika" "$ours" <<'PY'
import json, sys
pika, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"pipelined confirmed publishes: {ours['confirmed_publish_per_s']}/s vs pika one-at-a-time {pika['confirmed_publish_per_s']}/s "
      f"= {ours['confirmed_publish_per_s'] / pika['confirmed_publish_per_s']:.1f}x (target >= 10x)")
print(f"one-at-a-time confirmed publishes: {ours['sequential_confirmed_publish_per_s']}/s vs {pika['confirmed_publish_per_s']}/s "
      f"= {ours['sequential_confirmed_publish_per_s'] / pika['confirmed_publish_per_s']:.2f}x")
print(f"round trip p50: {ours['roundtrip_ms_p50']} ms vs {pika['roundtrip_ms_p50']} ms = {ours['roundtrip_ms_p50'] / pika['roundtrip_ms_p50']:.2f}x")
print(f"round trip p99: {ours['roundtrip_ms_p99']} ms vs {pika['roundtrip_ms_p99']} ms = {ours['roundtrip_ms_p99'] / pika['roundtrip_ms_p99']:.2f}x (target <= 1.5x)")
PY
