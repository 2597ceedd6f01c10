#!/usr/bin/env bash
# Local RabbitMQ and PostgreSQL for Candlecast, without systemd, on loopback, with their data under
# .local/ in the repository (git ignores it). Idempotent: `start` reuses servers that already run.
# As root, PostgreSQL runs as the postgres user, who may not be able to enter the clone (a home folder of
# mode 700): its cluster then lives in /var/lib/candlecast/<clone>-<hash of the clone's path>/, owned by postgres.
#
#   scripts/servers.sh start     install what is missing (apt), start both, wait until ready, write .local/env
#   scripts/servers.sh stop      stop both (and the epmd that RabbitMQ started), by pid
#   scripts/servers.sh purge     stop both and delete their data (the clone's .local/ servers and /var/lib folder)
#   scripts/servers.sh status    whether each runs, on which port, and where its data is
#   scripts/servers.sh rabbit-stop-app | rabbit-start-app | rabbit-restart | postgres-restart   (fault tests)
#   scripts/servers.sh vhost-add NAME | vhost-delete NAME                                     (isolated tests)
#   scripts/servers.sh database-roles DATABASE PREFIX | database-roles-drop PREFIX            (a role per service)
#   scripts/servers.sh broker-users VHOST       a broker user per service on VHOST (scripts/broker-users.sh)
#   scripts/servers.sh service-env SERVICE      the CANDLECAST_DATABASE_* and CANDLECAST_AMQP_* variables of
#                                               SERVICE's own database role and broker user
#
# Ports: CANDLECAST_AMQP_PORT (5672), CANDLECAST_PG_PORT (55432). Passwords are generated once into
# .local/secrets/ and handed to services through *_FILE variables in .local/env.
set -euo pipefail
# The servers outlive this script: they must not keep the caller's open files (a `flock` lock, a pipe).
for descriptor in /proc/$$/fd/*; do
  descriptor=${descriptor##*/}
  [ "$descriptor" -gt 2 ] 2>/dev/null && eval "exec $descriptor>&-" 2>/dev/null || true
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
AMQP_PORT=${CANDLECAST_AMQP_PORT:-5672}
PG_PORT=${CANDLECAST_PG_PORT:-55432}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
RABBIT_DIR="$LOCAL/rabbitmq"
SECRETS="$LOCAL/secrets"

# Where PostgreSQL keeps its cluster, its socket and its log. Not root: in the clone, as this user. Root: the
# server runs as postgres, so in a folder of the clone's own under /var/lib that postgres owns (a cluster
# already made in .local/postgres by an earlier version of this script stays where it is).
postgres_directory() {
  if [ "$(id -u)" -ne 0 ] || { [ ! -L "$LOCAL/postgres" ] && [ -f "$LOCAL/postgres/data/PG_VERSION" ]; }; then
    echo "$LOCAL/postgres"
  else
    echo "/var/lib/candlecast/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/postgres"
  fi
}
PG_DIR=$(postgres_directory)

# One node per port, so that two checkouts can run side by side (CI beside a developer).
export RABBITMQ_NODENAME=candlecast-$AMQP_PORT@localhost
export RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia"
export RABBITMQ_LOG_BASE="$RABBIT_DIR/log"
export RABBITMQ_PID_FILE="$RABBIT_DIR/rabbit.pid"
export RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq"
export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$AMQP_PORT
export RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
RABBITMQCTL=/usr/lib/rabbitmq/bin/rabbitmqctl
# psql: warnings and errors only (not the NOTICEs of idempotent statements run again).
export PGOPTIONS="-c client_min_messages=warning"

log() { printf '[servers] %s\n' "$*" >&2; }

install_packages() {
  local wanted=(rabbitmq-server postgresql librabbitmq-dev libpq-dev libopenblas-dev pkg-config curl)
  local missing=()
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  # policy-rc.d 101: the packages must not start their own system-wide servers.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
}

secret() { # name: generate once, print the path
  mkdir -p "$SECRETS"; chmod 700 "$SECRETS"
  local file="$SECRETS/$1"
  [ -s "$file" ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$file")
  echo "$file"
}

rabbit_running() { HOME="$RABBIT_DIR" "$RABBITMQCTL" -q status >/dev/null 2>&1; }

start_rabbit() {
  mkdir -p "$RABBIT_DIR/log" "$RABBIT_DIR/mnesia"
  if rabbit_running; then log "RabbitMQ already running on $AMQP_PORT"; else
    cat > "$RABBIT_DIR/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
disk_free_limit.absolute = 50MB
log.console = false
CONF
    echo "[]." > "$RABBIT_DIR/enabled_plugins"
    log "starting RabbitMQ on 127.0.0.1:$AMQP_PORT"
    HOME="$RABBIT_DIR" /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1
    # await_startup fails at once while the node has not registered with epmd yet: retry until it answers.
    local waited=0
    until HOME="$RABBIT_DIR" "$RABBITMQCTL" -q await_startup --timeout 60 >/dev/null 2>&1; do
      waited=$((waited + 1))
      [ $waited -ge 90 ] && { log "RabbitMQ did not start; see $RABBIT_DIR/log"; exit 1; }
      sleep 1
    done
  fi
  local password; password=$(cat "$(secret amqp_password)")
  HOME="$RABBIT_DIR" "$RABBITMQCTL" -q add_user candlecast "$password" >/dev/null 2>&1 \
    || HOME="$RABBIT_DIR" "$RABBITMQCTL" -q change_password candlecast "$password" >/dev/null
  HOME="$RABBIT_DIR" "$RABBITMQCTL" -q set_permissions -p / candlecast '.*' '.*' '.*' >/dev/null
  HOME="$RABBIT_DIR" "$RABBITMQCTL" -q set_user_tags candlecast administrator >/dev/null
  # The default guest/guest account is never needed: candlecast is the administrator, and each service has
  # a user of its own (broker_users).
  HOME="$RABBIT_DIR" "$RABBITMQCTL" -q delete_user guest >/dev/null 2>&1 || true
}

# From /: postgres may not be allowed into the current directory (a clone in a home folder of mode 700).
as_postgres() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

pg_running() { [ -f "$PG_DIR/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

start_postgres() {
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PG_DIR"
    # Which clone this folder serves, for whoever finds it under /var/lib.
    [ "$PG_DIR" = "$LOCAL/postgres" ] || echo "$ROOT" > "$(dirname "$PG_DIR")/clone"
  fi
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $PG_DIR/data"
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if pg_running; then log "PostgreSQL already running on $PG_PORT"; else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c max_connections=200 -c fsync=on" start >/dev/null
  fi
  local password; password=$(cat "$(secret database_password)")
  as_postgres psql -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -v pw="$password" >/dev/null <<'SQL'
SELECT format('CREATE ROLE candlecast LOGIN PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'candlecast') \gexec
SELECT format('ALTER ROLE candlecast PASSWORD %L', :'pw') \gexec
-- Local servers only: the tests give each suite a throwaway database.
ALTER ROLE candlecast CREATEDB;
SELECT 'CREATE DATABASE candlecast OWNER candlecast' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'candlecast') \gexec
SQL
}

# Each service connects as a role of its own that owns only its schema (scripts/database-roles.sql); the
# `candlecast` role (the CLI, the tests, backups) is a member of all of them. SECURITY.md explains the layout.
SERVICE_SCHEMAS="ingestor:ingest preprocessor:features registry:registry predictor:predictions monitor:monitor trainer:-"

database_roles() { # database role-prefix: create (or update) the roles, hand each its schema
  local database=$1 prefix=$2 variables=() pair service
  for pair in $SERVICE_SCHEMAS; do
    service=${pair%%:*}
    variables+=(-v "pw_${service}=$(cat "$(secret "database_password_${prefix}${service}")")")
  done
  as_postgres psql -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d "$database" -v prefix="$prefix" -v admin=candlecast "${variables[@]}" \
    >/dev/null <"$ROOT/scripts/database-roles.sql"
}

drop_database_roles() { # role-prefix: drop the roles once no database holds their objects
  local pair
  for pair in $SERVICE_SCHEMAS; do
    as_postgres psql -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -c "DROP ROLE IF EXISTS \"${1}${pair%%:*}\"" >/dev/null
    rm -f "$SECRETS/database_password_${1}${pair%%:*}"
  done
}

# A broker user per service (and candlecast_subscriber, read-only), with the permissions of
# scripts/broker-users.sh on one virtual host; passwords generated once into .local/secrets/. One
# import_definitions call, so adding them to a test's vhost costs about a second.
broker_users() { # vhost
  local user variable
  for user in $("$ROOT/scripts/broker-users.sh" users); do
    variable=CANDLECAST_AMQP_PASSWORD_$(echo "${user#candlecast_}" | tr '[:lower:]' '[:upper:]')
    export "$variable=$(cat "$(secret "amqp_password_$user")")"
  done
  "$ROOT/scripts/broker-users.sh" definitions "$1" | HOME="$RABBIT_DIR" "$RABBITMQCTL" -q import_definitions --format json >/dev/null
}

# The database and broker variables of one service: its role, its broker user and their password files.
service_env() {
  echo "CANDLECAST_DATABASE_URL=postgresql://candlecast_$1@127.0.0.1:$PG_PORT/candlecast"
  echo "CANDLECAST_DATABASE_PASSWORD_FILE=$SECRETS/database_password_candlecast_$1"
  echo "CANDLECAST_AMQP_URL=amqp://candlecast_$1@127.0.0.1:$AMQP_PORT/"
  echo "CANDLECAST_AMQP_PASSWORD_FILE=$(secret "amqp_password_candlecast_$1")"
}

write_env() {
  cat > "$LOCAL/env" <<ENV
# Written by scripts/servers.sh: source it to reach the local servers.
export CANDLECAST_AMQP_URL=amqp://candlecast@127.0.0.1:$AMQP_PORT/
export CANDLECAST_AMQP_PASSWORD_FILE=$SECRETS/amqp_password
export CANDLECAST_DATABASE_URL=postgresql://candlecast@127.0.0.1:$PG_PORT/candlecast
export CANDLECAST_DATABASE_PASSWORD_FILE=$SECRETS/database_password
export CANDLECAST_REGISTRY_TOKEN_FILE=$(secret registry_token)
export CANDLECAST_SERVERS_SCRIPT=$ROOT/scripts/servers.sh
ENV
}

stop_rabbit() {
  if rabbit_running; then log "stopping RabbitMQ"; HOME="$RABBIT_DIR" "$RABBITMQCTL" -q shutdown >/dev/null 2>&1 || true; fi
  # rabbitmq-server leaves epmd running: stop it by pid once no Erlang node needs it any more.
  local epmd_pid; epmd_pid=$(pgrep -x epmd || true)
  if [ -n "$epmd_pid" ] && ! pgrep -f beam.smp >/dev/null; then kill $epmd_pid 2>/dev/null || true; fi
}

stop_postgres() {
  if pg_running; then log "stopping PostgreSQL"; as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null; fi
}

case "${1:-}" in
  start)
    install_packages
    start_postgres
    database_roles candlecast candlecast_
    start_rabbit
    broker_users /
    write_env
    log "ready: source $LOCAL/env"
    ;;
  stop) stop_rabbit; stop_postgres ;;
  purge)
    stop_rabbit; stop_postgres
    log "deleting $RABBIT_DIR and $PG_DIR"
    rm -rf "$RABBIT_DIR" "$PG_DIR"
    [ "$PG_DIR" = "$LOCAL/postgres" ] || rm -rf "$(dirname "$PG_DIR")"
    ;;
  status)
    rabbit_running && echo "rabbitmq: running on $AMQP_PORT, data in $RABBIT_DIR" || echo "rabbitmq: stopped"
    pg_running && echo "postgres: running on $PG_PORT, data in $PG_DIR/data" || echo "postgres: stopped"
    ;;
  rabbit-stop-app) HOME="$RABBIT_DIR" "$RABBITMQCTL" -q stop_app ;;
  rabbit-start-app) HOME="$RABBIT_DIR" "$RABBITMQCTL" -q start_app ;;
  rabbit-restart) stop_rabbit; start_rabbit ;;
  # A virtual host of its own isolates a test's queues from every other run on the same broker.
  vhost-add)
    HOME="$RABBIT_DIR" "$RABBITMQCTL" -q add_vhost "${2:?vhost name}" >/dev/null
    HOME="$RABBIT_DIR" "$RABBITMQCTL" -q set_permissions -p "$2" candlecast '.*' '.*' '.*' >/dev/null ;;
  broker-users) broker_users "${2:?vhost name}" ;;
  database-roles) database_roles "${2:?database}" "${3:?role prefix}" ;;
  database-roles-drop) drop_database_roles "${2:?role prefix}" ;;
  service-env) service_env "${2:?service}" ;;
  vhost-delete) HOME="$RABBIT_DIR" "$RABBITMQCTL" -q delete_vhost "${2:?vhost name}" >/dev/null ;;
  postgres-restart) as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w restart -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c max_connections=200" >/dev/null ;;
  *) echo "usage: $0 start|stop|purge|status|rabbit-stop-app|rabbit-start-app|rabbit-restart|postgres-restart|vhost-add NAME|vhost-delete NAME|broker-users VHOST|database-roles DB PREFIX|database-roles-drop PREFIX|service-env SERVICE" >&2; exit 2 ;;
esac
