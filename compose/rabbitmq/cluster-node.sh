#!/usr/bin/env bash
# Entry point of each RabbitMQ node of the cluster variant (compose/docker-compose.cluster.yml): the Erlang
# cookie the three nodes share, CANDLECAST_RABBITMQ_ERLANG_COOKIE from compose/.env, written to the node's
# cookie file at every start (the nodes, and rabbitmqctl in the health checks, authenticate with it; a node
# with another cookie cannot join), then the image's own entry point with the command (rabbitmq-server).
set -euo pipefail
cookie=${RABBITMQ_DATA_DIR:-/var/lib/rabbitmq}/.erlang.cookie
rm -f "$cookie"
(umask 077; printf '%s' "${CANDLECAST_RABBITMQ_ERLANG_COOKIE:?set CANDLECAST_RABBITMQ_ERLANG_COOKIE in compose/.env}" > "$cookie")
chmod 400 "$cookie"
if [ "$(id -u)" = 0 ]; then chown rabbitmq:rabbitmq "$cookie"; fi
exec docker-entrypoint.sh "$@"
