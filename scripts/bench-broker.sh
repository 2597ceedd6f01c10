#!/usr/bin/env bash
# Broker benchmark: Candlecast's publisher and consumer (rabbitmq-c) beside the pika anchor
# (../shared/anchors/pika_anchor.py), in the same run on the same broker, with the ratios. Both log in as the
# local `candlecast` administrator (scripts/servers.sh deletes guest); both use the default exchange, which no
# service user may publish to.
#   scripts/bench-broker.sh [messages] [roundtrips]    BrokerBench's sizes (default 50000 2000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
anchors=../shared/anchors
venv=${ANCHOR_VENV:-$HOME/.venvs/anchors}

scripts/servers.sh start
# shellcheck source=/dev/null
source .local/env
# The anchor reads AMQP_URL: the same user, password and vhost as BrokerBench (never guest).
amqp_password=$(cat "$CANDLECAST_AMQP_PASSWORD_FILE")
amqp_rest=${CANDLECAST_AMQP_URL#amqp://}
amqp_user=${amqp_rest%%@*}
amqp_host=${amqp_rest#*@}; amqp_host=${amqp_host%%/*}
export AMQP_URL="amqp://$amqp_user:$amqp_password@$amqp_host/%2F" AMQP_USER=$amqp_user AMQP_PORT=${CANDLECAST_AMQP_PORT:-5672}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import pika" 2>/dev/null || "$venv/bin/pip" install -q pika
swift build -c release --product BrokerBench 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

echo "pika anchor:" >&2
pika=$("$venv/bin/python" "$anchors/pika_anchor.py")
echo "$pika"
echo "candlecast (rabbitmq-c):" >&2
ours=$("$bin/BrokerBench" "$@")
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
