#!/usr/bin/env bash
# One-shot step of compose (the broker-users service): a RabbitMQ user per service with least privilege, and
# the read-only candlecast_subscriber, imported through the management API as definitions. The table is
# scripts/broker-users.sh, the same one the local servers use (SECURITY.md). Idempotent: run at every `up`,
# it creates the users or updates their passwords and permissions; the administrator is left as it is.
set -euo pipefail
api=${CANDLECAST_RABBITMQ_API:-http://rabbitmq:15672/api}
for _ in $(seq 1 60); do
  curl -fsS -o /dev/null -u "$CANDLECAST_AMQP_USER:$CANDLECAST_AMQP_PASSWORD" "$api/overview" && break
  sleep 2
done
bash /candlecast/broker-users.sh definitions / \
  | curl -fsS -u "$CANDLECAST_AMQP_USER:$CANDLECAST_AMQP_PASSWORD" -H 'content-type: application/json' \
      -X POST --data-binary @- "$api/definitions"
echo "broker users: $(bash /candlecast/broker-users.sh users | tr '\n' ' ')"
