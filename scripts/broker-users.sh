#!/usr/bin/env bash
# Who may publish what on the broker: a RabbitMQ user per service, with least privilege, and a read-only
# user for forecast subscribers. Prints RabbitMQ definitions (JSON) for one virtual host; the same table
# serves the local servers (scripts/servers.sh broker-users VHOST: `rabbitmqctl import_definitions -`) and
# compose (compose/rabbitmq/users.sh: POST /api/definitions). SECURITY.md explains the table.
#
#   scripts/broker-users.sh definitions VHOST    passwords from CANDLECAST_AMQP_PASSWORD_<USER> (upper case)
#   scripts/broker-users.sh users                the user names, one a line
#
# RabbitMQ's rules (access-control guide): exchange.declare and queue.declare need `configure` on the name
# (queue.delete too); queue.bind needs `write` on the queue and `read` on the exchange, and the binding key
# must match the user's topic `read` pattern on a topic exchange; basic.publish needs `write` on the exchange
# and the routing key must match the topic `write` pattern; basic.consume and queue.purge need `read` on the
# queue; declaring a queue with x-dead-letter-exchange needs `read` on the queue and `write` on that exchange.
# A user without topic permissions on an exchange may use any routing key there, so every user gets them on
# both exchanges. The `candlecast` administrator (CLI, tests, operators) is not in this table.
set -euo pipefail

# user | configure | write | read | events: topic write | events: topic read | dead-letters: topic write | dead-letters: topic read
# (^$ matches no name: the default exchange is amq.default, never the empty string.)
TABLE='
candlecast_ingestor
  ^(candlecast\.(events|dead-letters)|ingestor\.dead-letters)$
  ^(candlecast\.(events|dead-letters)|ingestor\.dead-letters)$
  ^candlecast\.dead-letters$
  ^candle\.(closed|backfilled)\.[^.]+\.[^.]+$
  ^$
  ^ingestor$
  ^ingestor$
candlecast_preprocessor
  ^(candlecast\.(events|dead-letters)|preprocessor\.(candles|dead-letters))$
  ^(candlecast\.(events|dead-letters)|preprocessor\.(candles|dead-letters))$
  ^(candlecast\.(events|dead-letters)|preprocessor\.candles)$
  ^(features\.window|dataset\.ready)\.[^.]+\.[^.]+$
  ^candle\.(closed|backfilled)\.
  ^preprocessor$
  ^preprocessor$
candlecast_trainer
  ^(candlecast\.(events|dead-letters)|training\.jobs|trainer\.dead-letters)$
  ^(candlecast\.(events|dead-letters)|training\.jobs|trainer\.dead-letters)$
  ^(candlecast\.(events|dead-letters)|training\.jobs)$
  ^(training\.completed|metric\.trainer\.[^.]+)$
  ^training\.job$
  ^trainer$
  ^trainer$
candlecast_registry
  ^(candlecast\.(events|dead-letters)|registry\.(datasets|training-results|dead-letters))$
  ^(candlecast\.(events|dead-letters)|registry\.(datasets|training-results|dead-letters))$
  ^(candlecast\.(events|dead-letters)|registry\.(datasets|training-results))$
  ^(training\.job|model\.promoted\.[^.]+)$
  ^(dataset\.ready\.|training\.completed$|metric\.trainer\.)
  ^registry$
  ^registry$
candlecast_predictor
  ^(candlecast\.(events|dead-letters)|predictor\.(windows|models\.[A-Za-z0-9-]+|candles|dead-letters))$
  ^(candlecast\.(events|dead-letters)|predictor\.(windows|models\.[A-Za-z0-9-]+|candles|dead-letters))$
  ^(candlecast\.(events|dead-letters)|predictor\.(windows|models\.[A-Za-z0-9-]+|candles))$
  ^(forecast\.created\.[^.]+\.[^.]+|metric\.predictor\.[^.]+)$
  ^(features\.window|model\.promoted|candle\.closed)\.
  ^predictor$
  ^predictor$
candlecast_monitor
  ^(candlecast\.(events|dead-letters)|monitor\.(metrics|forecasts|candles|models|events)|(ingestor|preprocessor|trainer|registry|predictor|monitor)\.dead-letters)$
  ^(candlecast\.dead-letters|monitor\.(metrics|forecasts|candles|models|events)|(ingestor|preprocessor|trainer|registry|predictor|monitor)\.dead-letters)$
  ^(candlecast\.(events|dead-letters)|monitor\.(metrics|forecasts|candles|models|events)|(ingestor|preprocessor|trainer|registry|predictor|monitor)\.dead-letters)$
  ^$
  .*
  ^monitor$
  ^(ingestor|preprocessor|trainer|registry|predictor|monitor)$
candlecast_subscriber
  ^(candlecast\.(events|dead-letters)|candlecast\.client\..+|amq\.gen-.+)$
  ^(candlecast\.dead-letters|candlecast\.client\..+|amq\.gen-.+)$
  ^(candlecast\.(events|dead-letters)|candlecast\.client\..+|amq\.gen-.+)$
  ^$
  ^forecast\.created\.
  ^candlecast\.client\..+\.dead-letters$
  ^candlecast\.client\..+\.dead-letters$
'

json() { # a JSON string
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

definitions() {
  local vhost=$1 fields users=() permissions=() topics=() variable password
  set -f; fields=($TABLE); set +f  # no globbing of the patterns
  for ((i = 0; i < ${#fields[@]}; i += 8)); do
    local user=${fields[i]}
    variable=CANDLECAST_AMQP_PASSWORD_$(echo "${user#candlecast_}" | tr '[:lower:]' '[:upper:]')
    password=${!variable:?$variable is not set}
    users+=("{\"name\":$(json "$user"),\"password\":$(json "$password"),\"tags\":\"\"}")
    permissions+=("{\"user\":$(json "$user"),\"vhost\":$(json "$vhost"),\"configure\":$(json "${fields[i + 1]}"),\"write\":$(json "${fields[i + 2]}"),\"read\":$(json "${fields[i + 3]}")}")
    topics+=("{\"user\":$(json "$user"),\"vhost\":$(json "$vhost"),\"exchange\":\"candlecast.events\",\"write\":$(json "${fields[i + 4]}"),\"read\":$(json "${fields[i + 5]}")}")
    topics+=("{\"user\":$(json "$user"),\"vhost\":$(json "$vhost"),\"exchange\":\"candlecast.dead-letters\",\"write\":$(json "${fields[i + 6]}"),\"read\":$(json "${fields[i + 7]}")}")
  done
  local IFS=,
  printf '{"users":[%s],"permissions":[%s],"topic_permissions":[%s]}\n' "${users[*]}" "${permissions[*]}" "${topics[*]}"
}

case "${1:-}" in
  definitions) definitions "${2:?vhost}" ;;
  users) set -f; printf '%s\n' $TABLE | grep '^candlecast_' ;;
  *) echo "usage: $0 definitions VHOST | users" >&2; exit 2 ;;
esac
