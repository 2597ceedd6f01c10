#!/usr/bin/env bash
# Local RabbitMQ and PostgreSQL for Candlecast, without systemd, on loopback, with their data under
# .local/ in the repository (git ignores it). Idempotent: `start` reuses servers that already run.
# As root, PostgreSQL runs as the postgres user, who may not be able to enter the clone (a home folder of
# mode 700): its cluster then lives in /var/lib/candlecast/<clone>-<hash of the clone's path>/, owned by postgres.
#
#   scripts/servers.sh start     install what is missing (apt), start both, wait until ready, write .local/env
#   scripts/servers.sh stop      stop both (and the epmd that RabbitMQ started), by pid
#   scripts/servers.sh restart   stop both and start them again (to apply a new configuration, such as TLS)
#   scripts/servers.sh purge     stop both and delete their data (the clone's .local/ servers and /var/lib folder)
#   scripts/servers.sh status    whether each runs, on which port, and where its data is
#   scripts/servers.sh rabbit-stop-app | rabbit-start-app | rabbit-restart | postgres-restart   (fault tests)
#   scripts/servers.sh vhost-add NAME | vhost-delete NAME                                     (isolated tests)
#   scripts/servers.sh database-roles DATABASE PREFIX | database-roles-drop PREFIX            (a role per service)
#   scripts/servers.sh broker-users VHOST       a broker user per service on VHOST (scripts/broker-users.sh)
#   scripts/servers.sh service-env SERVICE      the CANDLECAST_DATABASE_* and CANDLECAST_AMQP_* variables of
#                                               SERVICE's own database role and broker user
#   scripts/servers.sh tls-certs                the CA and server certificates of .local/tls/ (`start` makes them)
#
# A three-node RabbitMQ cluster beside the main node (failover tests), data in .local/rabbitmq-cluster/:
#   scripts/servers.sh cluster-start            start (and join) the nodes, users as on the main node,
#                                               write .local/cluster.env
#   scripts/servers.sh cluster-node-stop N | cluster-node-kill N | cluster-node-start N    node N in 1..3:
#                                               shut its VM down, kill -9 it, start it again (it rejoins)
#   scripts/servers.sh cluster-vhost-add NAME | cluster-vhost-delete NAME | cluster-broker-users VHOST
#   scripts/servers.sh cluster-connections      node, user, connection name and peer port of each connection
#   scripts/servers.sh cluster-status | cluster-stop | cluster-purge
#
# A PostgreSQL primary and its synchronous streaming standby (failover tests), beside the main cluster:
#   scripts/servers.sh pg-pair-start            start both, wait until the standby is in sync, write .local/pair.env
#   scripts/servers.sh pg-pair-stop-primary     crash the primary (immediate stop)
#   scripts/servers.sh pg-pair-promote          promote the standby, wait until it accepts writes
#   scripts/servers.sh pg-pair-status | pg-pair-stop | pg-pair-purge
#   scripts/servers.sh pg-pair-reset            purge and start: a fresh pair for the next test run
#
# Ports: CANDLECAST_AMQP_PORT (5672), CANDLECAST_AMQPS_PORT (TLS, the AMQP port - 1: 5671), CANDLECAST_PG_PORT
# (55432, TCP and TLS), CANDLECAST_CLUSTER_PORT (5681: nodes on 5681, 5682, 5683), CANDLECAST_PG_PAIR_PORT
# (55442: primary, standby on 55443). Passwords are generated once into .local/secrets/ and handed to
# services through *_FILE variables in .local/env.
set -euo pipefail
# The servers outlive this script: they must not keep the caller's open files (a `flock` lock, a pipe).
for descriptor in /proc/$$/fd/*; do
  descriptor=${descriptor##*/}
  [ "$descriptor" -gt 2 ] 2>/dev/null && eval "exec $descriptor>&-" 2>/dev/null || true
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
AMQP_PORT=${CANDLECAST_AMQP_PORT:-5672}
# Below the AMQP port rather than a fixed 5671: a second checkout on ports of its own (first-run-test.sh's
# 5772) must not find its TLS port taken by the first, or its node would not start.
AMQPS_PORT=${CANDLECAST_AMQPS_PORT:-$((AMQP_PORT - 1))}
PG_PORT=${CANDLECAST_PG_PORT:-55432}
CLUSTER_PORT=${CANDLECAST_CLUSTER_PORT:-5681}
PAIR_PORT=${CANDLECAST_PG_PAIR_PORT:-55442}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
RABBIT_DIR="$LOCAL/rabbitmq"
CLUSTER_DIR="$LOCAL/rabbitmq-cluster"
SECRETS="$LOCAL/secrets"
TLS_DIR="$LOCAL/tls"

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
# The primary/standby pair lives beside the main cluster, so as root it is postgres's too.
PAIR_DIR="$(dirname "$PG_DIR")/postgres-pair"

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
  # openssl makes the TLS certificates; iproute2 (ss) tells which cluster node listens.
  local wanted=(rabbitmq-server postgresql librabbitmq-dev libpq-dev libopenblas-dev pkg-config curl openssl iproute2)
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

# A CA of the clone's own and the certificate it signs for both servers' TLS listeners (localhost,
# 127.0.0.1). other-ca.pem signed nothing here and wrong-host.pem names another host: tests use them to show
# that a client refuses the server. Each is made once, and again when it is missing, expires within a day or
# (those the CA signs) is no longer signed by ca.pem; main servers that already run then take the new ones.
tls_certs() {
  mkdir -p "$TLS_DIR"
  local made=0
  tls_valid ca || { tls_ca ca "Candlecast local CA"; made=1; }
  tls_valid other-ca || { tls_ca other-ca "Candlecast unrelated CA"; rm -f "$TLS_DIR/other-ca.key"; made=1; }
  tls_valid server signed || { tls_server server localhost "DNS:localhost, IP:127.0.0.1"; made=1; }
  tls_valid wrong-host signed || { tls_server wrong-host not-this-host.example "DNS:not-this-host.example"; made=1; }
  [ $made -eq 0 ] || chmod 644 "$TLS_DIR"/*.pem
  # Servers that already run take new certificates without a restart: PostgreSQL rereads its copies on
  # reload, RabbitMQ's TLS listener reads its files again once Erlang's PEM cache is cleared.
  if pg_running && ! cmp -s "$TLS_DIR/server.pem" "$PG_DIR/server.pem"; then
    log "PostgreSQL takes the new server certificate (reload)"
    postgres_tls_files
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" reload >/dev/null
  fi
  if [ $made -eq 1 ] && rabbit_running; then main_ctl -q eval 'ssl:clear_pem_cache().' >/dev/null; fi
}

tls_valid() { # name [signed]: name.pem (and its key; other-ca keeps none) lasts another day (and ca.pem signed it)
  [ -s "$TLS_DIR/$1.pem" ] && { [ "$1" = other-ca ] || [ -s "$TLS_DIR/$1.key" ]; } &&
    openssl x509 -checkend 86400 -noout -in "$TLS_DIR/$1.pem" >/dev/null 2>&1 &&
    { [ -z "${2:-}" ] || openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/$1.pem" >/dev/null 2>&1; }
}

tls_ca() { # name common-name: a self-signed CA, name.pem and name.key
  log "making $TLS_DIR/$1.pem"
  (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints = critical, CA:TRUE" -addext "keyUsage = critical, keyCertSign, cRLSign" \
    -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.pem" 2>/dev/null)
}

tls_server() { # name common-name subject-alt-names: a server certificate signed by ca.pem, name.pem and name.key
  log "making $TLS_DIR/$1.pem ($3)"
  (umask 077; openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.csr" 2>/dev/null)
  printf '%s\n' "subjectAltName = $3" "basicConstraints = critical, CA:FALSE" \
    "keyUsage = critical, digitalSignature, keyEncipherment" "extendedKeyUsage = serverAuth" > "$TLS_DIR/$1.ext"
  openssl x509 -req -in "$TLS_DIR/$1.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 825 -extfile "$TLS_DIR/$1.ext" -out "$TLS_DIR/$1.pem" 2>/dev/null
  rm -f "$TLS_DIR/$1.csr" "$TLS_DIR/$1.ext"
}

# rabbitmqctl for the main node; the cluster's is cluster_ctl. Functions that manage users take either.
main_ctl() { HOME="$RABBIT_DIR" "$RABBITMQCTL" "$@"; }

rabbit_running() { main_ctl -q status >/dev/null 2>&1; }

await_rabbit() { # description log-folder rabbitmqctl-command...
  # await_startup fails at once while the node has not registered with epmd yet: retry until it answers.
  local waited=0
  until "${@:3}" -q await_startup --timeout 60 >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ $waited -ge 90 ] && { log "$1 did not start; see $2"; exit 1; }
    sleep 1
  done
}

rabbit_admin() { # rabbitmqctl-function: the candlecast administrator, with the password of .local/secrets/
  local ctl=$1 password; password=$(cat "$(secret amqp_password)")
  "$ctl" -q add_user candlecast "$password" >/dev/null 2>&1 || "$ctl" -q change_password candlecast "$password" >/dev/null
  "$ctl" -q set_permissions -p / candlecast '.*' '.*' '.*' >/dev/null
  "$ctl" -q set_user_tags candlecast administrator >/dev/null
  # The default guest/guest account is never needed: candlecast is the administrator, and each service has
  # a user of its own (broker_users).
  "$ctl" -q delete_user guest >/dev/null 2>&1 || true
}

start_rabbit() {
  mkdir -p "$RABBIT_DIR/log" "$RABBIT_DIR/mnesia"
  if rabbit_running; then log "RabbitMQ already running on $AMQP_PORT"; else
    tls_certs
    # TLS beside TCP. verify_peer with fail_if_no_peer_cert = false: a client need not present a certificate,
    # but one that does must be signed by ca.pem. The node runs as this script's user (root included), who
    # owns .local/tls/ and so may read the key.
    cat > "$RABBIT_DIR/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
disk_free_limit.absolute = 50MB
log.console = false
CONF
    echo "[]." > "$RABBIT_DIR/enabled_plugins"
    log "starting RabbitMQ on 127.0.0.1:$AMQP_PORT (TLS on $AMQPS_PORT)"
    HOME="$RABBIT_DIR" /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1
    await_rabbit RabbitMQ "$RABBIT_DIR/log" main_ctl
  fi
  rabbit_admin main_ctl
}

# From /: postgres may not be allowed into the current directory (a clone in a home folder of mode 700).
as_postgres() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

pg_running() { [ -f "$PG_DIR/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

# The main server's options, for start and for postgres-restart alike. TLS beside plain TCP: the hba lines
# of initdb (host ... scram-sha-256) match both, so clients without TLS connect as before.
postgres_options() {
  echo "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR -c max_connections=200 -c fsync=on" \
    "-c ssl=on -c ssl_cert_file=$PG_DIR/server.pem -c ssl_key_file=$PG_DIR/server.key"
}

# The server refuses a key that another user owns or others may read: as root, a copy in its folder that
# postgres owns, mode 0600.
postgres_tls_files() {
  local owner=(); [ "$(id -u)" -eq 0 ] && owner=(-o postgres)
  install -m 644 "${owner[@]}" "$TLS_DIR/server.pem" "$PG_DIR/server.pem"
  install -m 600 "${owner[@]}" "$TLS_DIR/server.key" "$PG_DIR/server.key"
}

candlecast_role() { # socket-folder port: the candlecast role (CREATEDB) and database
  local password; password=$(cat "$(secret database_password)")
  as_postgres psql -q -h "$1" -p "$2" -U postgres -d postgres -v ON_ERROR_STOP=1 -v pw="$password" >/dev/null <<'SQL'
SELECT format('CREATE ROLE candlecast LOGIN PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'candlecast') \gexec
SELECT format('ALTER ROLE candlecast PASSWORD %L', :'pw') \gexec
-- Local servers only: the tests give each suite a throwaway database.
ALTER ROLE candlecast CREATEDB;
SELECT 'CREATE DATABASE candlecast OWNER candlecast' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'candlecast') \gexec
SQL
}

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
    tls_certs
    postgres_tls_files
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT (TLS on the same port)"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 -o "$(postgres_options)" start >/dev/null
  fi
  candlecast_role "$PG_DIR" "$PG_PORT"
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
broker_users() { # vhost [rabbitmqctl-function: main_ctl, the default, or cluster_ctl]
  local ctl=${2:-main_ctl} user variable
  for user in $("$ROOT/scripts/broker-users.sh" users); do
    variable=CANDLECAST_AMQP_PASSWORD_$(echo "${user#candlecast_}" | tr '[:lower:]' '[:upper:]')
    export "$variable=$(cat "$(secret "amqp_password_$user")")"
  done
  "$ROOT/scripts/broker-users.sh" definitions "$1" | "$ctl" -q import_definitions --format json >/dev/null
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
export CANDLECAST_TLS_CA_FILE=$TLS_DIR/ca.pem
export CANDLECAST_TLS_OTHER_CA_FILE=$TLS_DIR/other-ca.pem
export CANDLECAST_AMQPS_PORT=$AMQPS_PORT
ENV
}

stop_rabbit() {
  if rabbit_running; then log "stopping RabbitMQ"; main_ctl -q shutdown >/dev/null 2>&1 || true; fi
  stop_epmd
}

# rabbitmq-server leaves epmd running: stop it by pid once no Erlang node needs it any more. The main node
# and the cluster's share it, so any beam.smp still running (a cluster node, the main node) keeps it.
stop_epmd() {
  local epmd_pid; epmd_pid=$(pgrep -x epmd || true)
  if [ -n "$epmd_pid" ] && ! pgrep -f beam.smp >/dev/null; then kill $epmd_pid 2>/dev/null || true; fi
}

stop_postgres() {
  if pg_running; then log "stopping PostgreSQL"; as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null; fi
}

# ---- A three-node RabbitMQ cluster on loopback, apart from the main node: nodes 1..3 on CLUSTER_PORT, +1,
# +2 (distribution on port + 20000), each with its folder .local/rabbitmq-cluster/nodeN/. HOME is the
# cluster's folder for every rabbitmq-server and rabbitmqctl call: one Erlang cookie, the main node's not.

cluster_port() { echo $((CLUSTER_PORT + $1 - 1)); }
cluster_node() { echo "candlecast-cluster-$(cluster_port "$1")@localhost"; }
cluster_nodes() { echo 1 2 3; }

cluster_run() { # n command...: the command in node n's environment (replacing the main node's, exported above)
  local dir="$CLUSTER_DIR/node$1" port; port=$(cluster_port "$1")
  HOME="$CLUSTER_DIR" RABBITMQ_NODENAME="$(cluster_node "$1")" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbit.pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_NODE_PORT="$port" \
    RABBITMQ_DIST_PORT=$((port + 20000)) "${@:2}"
}

node_ctl() { local n=$1; shift; cluster_run "$n" "$RABBITMQCTL" -n "$(cluster_node "$n")" "$@"; }

# Node n's VM: the pid its node wrote, if still alive and still that node (not a reused pid: the node's name
# is in its environment, not on its command line).
cluster_node_pid() {
  local pid; pid=$(cat "$CLUSTER_DIR/node$1/rabbit.pid" 2>/dev/null) || return 1
  # (grep without -q: one that stops reading early would fail the pipeline, pipefail)
  [ -n "$pid" ] && tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -xF "RABBITMQ_NODENAME=$(cluster_node "$1")" >/dev/null &&
    echo "$pid"
}
cluster_node_running() { cluster_node_pid "$1" >/dev/null; }
# Whether node n's AMQP listener is up (its rabbit application runs), without opening a connection that
# would show in list_connections.
cluster_node_serving() { cluster_node_running "$1" && [ -n "$(ss -Hltn "sport = :$(cluster_port "$1")")" ]; }

cluster_ctl() { # rabbitmqctl on any node whose application runs: users, vhosts, queues are the cluster's
  local n
  for n in $(cluster_nodes); do
    if cluster_node_serving "$n"; then node_ctl "$n" "$@"; return; fi
  done
  log "no node of the cluster runs (scripts/servers.sh cluster-start)"; return 1
}

launch_cluster_node() { # n: start node n's VM, without waiting
  local dir="$CLUSTER_DIR/node$1" port; port=$(cluster_port "$1")
  mkdir -p "$dir/log" "$dir/mnesia"
  # Written before any node starts: three nodes starting at once could otherwise each write a cookie of its own.
  [ -s "$CLUSTER_DIR/.erlang.cookie" ] || (umask 077; openssl rand -hex 20 > "$CLUSTER_DIR/.erlang.cookie")
  chmod 400 "$CLUSTER_DIR/.erlang.cookie"
  cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
disk_free_limit.absolute = 50MB
log.console = false
CONF
  echo "[]." > "$dir/enabled_plugins"
  log "starting cluster node $(cluster_node "$1") on 127.0.0.1:$port"
  cluster_run "$1" /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1
}

await_cluster_node() { await_rabbit "cluster node $(cluster_node "$1")" "$CLUSTER_DIR/node$1/log" node_ctl "$1"; }

# The members a node knows of (disk_nodes of cluster_status), one a line.
cluster_members() {
  node_ctl "$1" -q cluster_status --formatter json | grep -o '"disk_nodes":\[[^]]*\]' | grep -o '"[^"]*@[^"]*"' | tr -d '"'
}

start_cluster() {
  mkdir -p "$CLUSTER_DIR"
  local n
  # All stopped nodes at once: a member that stopped waits for the others as it starts, up to five minutes.
  for n in $(cluster_nodes); do cluster_node_running "$n" || launch_cluster_node "$n"; done
  for n in $(cluster_nodes); do await_cluster_node "$n"; done
  # Nodes 2 and 3 join node 1, once: a member that restarts rejoins by itself. join_cluster resets the node.
  local members; members=$(cluster_members 1)
  for n in 2 3; do
    if ! grep -qxF "$(cluster_node "$n")" <<<"$members"; then
      log "cluster node $(cluster_node "$n") joins $(cluster_node 1)"
      node_ctl "$n" -q stop_app >/dev/null
      node_ctl "$n" -q join_cluster "$(cluster_node 1)" >/dev/null
      node_ctl "$n" -q start_app >/dev/null
    fi
  done
  rabbit_admin cluster_ctl
  broker_users / cluster_ctl
  local ports="" hosts=""
  for n in $(cluster_nodes); do ports+=" $(cluster_port "$n")"; hosts+=",127.0.0.1:$(cluster_port "$n")"; done
  cat > "$LOCAL/cluster.env" <<ENV
# Written by scripts/servers.sh cluster-start: source it to reach the three-node RabbitMQ cluster.
export CANDLECAST_CLUSTER_AMQP_URL=amqp://candlecast@${hosts#,}/
export CANDLECAST_CLUSTER_AMQP_PASSWORD_FILE=$SECRETS/amqp_password
export CANDLECAST_CLUSTER_PORTS="${ports# }"
ENV
  log "cluster ready: source $LOCAL/cluster.env"
}

stop_cluster_node() { # n: shut the VM down (the node leaves its cluster's running nodes, stays a member)
  if cluster_node_running "$1"; then
    log "stopping cluster node $(cluster_node "$1")"
    node_ctl "$1" -q shutdown >/dev/null 2>&1 || true
  fi
}

kill_cluster_node() { # n: a crash, kill -9 of its VM
  local pid; pid=$(cluster_node_pid "$1") || { log "cluster node $1 is not running"; return 0; }
  log "killing cluster node $(cluster_node "$1") (pid $pid)"
  kill -9 "$pid"
  # Gone, or a zombie that nobody reaps yet (its sockets are closed already); at most 10 s.
  local waited=0
  while [ $waited -lt 100 ] && [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    sleep 0.1; waited=$((waited + 1))
  done
}

cluster_node_number() { # the N of a command line, checked
  case "${1:-}" in 1|2|3) echo "$1" ;; *) log "a node number: 1, 2 or 3"; exit 2 ;; esac
}

cluster_status() {
  local n state
  for n in $(cluster_nodes); do
    if cluster_node_serving "$n"; then state="running on 127.0.0.1:$(cluster_port "$n")"
    elif cluster_node_running "$n"; then state="VM running, application stopped"
    else state=stopped; fi
    echo "cluster node $n: $(cluster_node "$n") $state, data in $CLUSTER_DIR/node$n"
  done
  local json; json=$(cluster_ctl -q cluster_status --formatter json 2>/dev/null) || { echo "cluster: no node runs"; return 0; }
  echo "members: $(grep -o '"disk_nodes":\[[^]]*\]' <<<"$json" | grep -o '"[^"]*@[^"]*"' | tr -d '"' | paste -sd' ')"
  echo "running: $(grep -o '"running_nodes":\[[^]]*\]' <<<"$json" | grep -o '"[^"]*@[^"]*"' | tr -d '"' | paste -sd' ')"
}

# One line per AMQP connection: node, user, the client's connection_name (empty if it gave none), peer port.
# list_connections has no node column: the node is that of the connection's pid, <NODE.n.n.n>. It prints
# client_properties as an Erlang term, [...,{"connection_name","..."}] (quotes escaped as \").
cluster_connections() {
  cluster_ctl -q list_connections --no-table-headers pid user client_properties peer_port | awk -F'\t' '{
    node = $1; sub(/^</, "", node); sub(/\.[0-9]+\.[0-9]+\.[0-9]+>$/, "", node)
    name = ""
    if (match($3, /\{"connection_name",(longstr,<<)?"([^"\\]|\\.)*"/)) {
      name = substr($3, RSTART, RLENGTH); sub(/^\{"connection_name",(longstr,<<)?"/, "", name); sub(/"$/, "", name)
      gsub(/\\"/, "\"", name); gsub(/\\\\/, "\\", name)
    }
    printf "%s\t%s\t%s\t%s\n", node, $2, name, $4
  }'
}

stop_cluster() {
  local n
  for n in 3 2 1; do stop_cluster_node "$n"; done
  stop_epmd
}

# ---- A PostgreSQL primary and a synchronous streaming standby on loopback: PAIR_PORT and PAIR_PORT + 1,
# folders PAIR_DIR/primary and PAIR_DIR/standby (data/, socket, log). The standby connects as `replicator`
# with application_name candlecast_standby, the name the primary waits for on each commit.

pair_port() { if [ "$1" = primary ]; then echo "$PAIR_PORT"; else echo $((PAIR_PORT + 1)); fi; }
pair_running() { [ -f "$PAIR_DIR/$1/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PAIR_DIR/$1/data" status >/dev/null 2>&1; }
pair_psql() { # primary|standby psql-arguments...: as postgres, over the server's socket
  as_postgres psql -X -q -h "$PAIR_DIR/$1" -p "$(pair_port "$1")" -U postgres -d postgres -v ON_ERROR_STOP=1 "${@:2}"
}
pair_in_recovery() { [ "$(pair_psql "$1" -tAc 'SELECT pg_is_in_recovery()')" = t ]; }

pair_options() { # primary|standby
  local options
  options="-p $(pair_port "$1") -c listen_addresses=127.0.0.1 -k $PAIR_DIR/$1 -c max_connections=200 -c fsync=on"
  options+=" -c wal_level=replica -c max_wal_senders=10 -c hot_standby=on"
  # Only the primary waits for its standby: once promoted, the standby must accept writes on its own.
  [ "$1" = primary ] && options+=" -c synchronous_standby_names=candlecast_standby -c synchronous_commit=on"
  echo "$options"
}

start_pair_server() { # primary|standby
  if pair_running "$1"; then log "pair $1 already running on $(pair_port "$1")"; return 0; fi
  log "starting the pair's $1 on 127.0.0.1:$(pair_port "$1")"
  as_postgres "$PG_BIN/pg_ctl" -D "$PAIR_DIR/$1/data" -l "$PAIR_DIR/$1/postgres.log" -w -t 60 -o "$(pair_options "$1")" start >/dev/null
}

start_pair() {
  local primary="$PAIR_DIR/primary" standby="$PAIR_DIR/standby"
  # A promoted standby (after a failover test) beside its old primary started again would be two primaries.
  if [ -f "$standby/data/PG_VERSION" ] && [ ! -f "$standby/data/standby.signal" ]; then
    log "the pair's standby was promoted; scripts/servers.sh pg-pair-reset makes a fresh pair"; exit 1
  fi
  mkdir -p "$primary" "$standby"
  chmod 700 "$PAIR_DIR" "$primary" "$standby"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PAIR_DIR" "$primary" "$standby"
    [ "$PG_DIR" = "$LOCAL/postgres" ] || echo "$ROOT" > "$(dirname "$PG_DIR")/clone"
  fi
  if [ ! -f "$primary/data/PG_VERSION" ]; then
    log "initialising the pair's primary in $primary/data"
    as_postgres "$PG_BIN/initdb" -D "$primary/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    # The standby copies this file: after a promotion it lets a new standby in the same way.
    as_postgres tee "$primary/data/pg_hba.conf" >/dev/null <<'HBA'
# Written by scripts/servers.sh pg-pair-start.
local   all          all                       trust
local   replication  all                       trust
host    replication  replicator  127.0.0.1/32  scram-sha-256
host    all          all         127.0.0.1/32  scram-sha-256
HBA
  fi
  start_pair_server primary
  local replication_password; replication_password=$(cat "$(secret pg_replication_password)")
  # synchronous_commit = local: these commits must not wait for a standby that may not exist yet.
  pair_psql primary -v pw="$replication_password" >/dev/null <<'SQL'
SET synchronous_commit = local;
SELECT format('CREATE ROLE replicator REPLICATION LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec
SELECT format('ALTER ROLE replicator PASSWORD %L', :'pw') \gexec
SQL
  PGOPTIONS="$PGOPTIONS -c synchronous_commit=local" candlecast_role "$primary" "$PAIR_PORT"
  if [ ! -f "$standby/data/PG_VERSION" ]; then
    log "copying the primary into the standby's $standby/data (pg_basebackup)"
    as_postgres rm -rf "$standby/data"
    # The standby's password file, beside its data: -R writes passfile=... into primary_conninfo (and
    # whatever else the connection was given, so not this script's PGOPTIONS).
    (umask 077; printf '127.0.0.1:%s:*:replicator:%s\n' "$PAIR_PORT" "$replication_password" |
      as_postgres tee "$standby/replication.pgpass" >/dev/null)
    # Its replication slot keeps the WAL the standby has not received while it is stopped.
    pair_psql primary -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE slot_name = 'candlecast_standby' AND NOT active" >/dev/null
    as_postgres env -u PGOPTIONS PGPASSFILE="$standby/replication.pgpass" "$PG_BIN/pg_basebackup" -D "$standby/data" \
      -d "host=127.0.0.1 port=$PAIR_PORT user=replicator application_name=candlecast_standby" \
      -X stream -C -S candlecast_standby -R -c fast
  fi
  start_pair_server standby
  local waited=0
  local sync_state="SELECT sync_state FROM pg_stat_replication WHERE application_name = 'candlecast_standby'"
  until [ "$(pair_psql primary -tAc "$sync_state")" = sync ]; do
    waited=$((waited + 1))
    [ $waited -ge 60 ] && { log "the standby is not in sync; see $standby/postgres.log"; exit 1; }
    sleep 1
  done
  # Both hosts: libpq tries them in turn and keeps the one that accepts writes (the standby, once promoted).
  local hosts="127.0.0.1:$PAIR_PORT,127.0.0.1:$((PAIR_PORT + 1))"
  cat > "$LOCAL/pair.env" <<ENV
# Written by scripts/servers.sh pg-pair-start: source it to reach the primary/standby pair.
export CANDLECAST_PAIR_DATABASE_URL=postgresql://candlecast@$hosts/candlecast?target_session_attrs=read-write
export CANDLECAST_PAIR_DATABASE_PASSWORD_FILE=$SECRETS/database_password
export CANDLECAST_PAIR_PRIMARY_PORT=$PAIR_PORT
export CANDLECAST_PAIR_STANDBY_PORT=$((PAIR_PORT + 1))
ENV
  log "pair ready (standby in sync): source $LOCAL/pair.env"
}

promote_pair_standby() {
  pair_running standby || { log "the pair's standby is not running"; exit 1; }
  log "promoting the pair's standby on $(pair_port standby)"
  as_postgres "$PG_BIN/pg_ctl" -D "$PAIR_DIR/standby/data" -w -t 60 promote >/dev/null
  local waited=0
  while pair_in_recovery standby; do
    waited=$((waited + 1))
    [ $waited -ge 60 ] && { log "the standby is still in recovery; see $PAIR_DIR/standby/postgres.log"; exit 1; }
    sleep 1
  done
}

pair_status() {
  local server role
  for server in primary standby; do
    if pair_running "$server"; then
      if pair_in_recovery "$server"; then role=standby; else role=primary; fi
      echo "pair $server: running on $(pair_port "$server") as $role, data in $PAIR_DIR/$server/data"
      if [ $role = primary ]; then
        pair_psql "$server" -tAF ' ' -c "SELECT 'replication to', application_name, state, sync_state FROM pg_stat_replication"
      fi
    else
      echo "pair $server: stopped"
    fi
  done
}

stop_pair() {
  local server
  # The primary first: its shutdown checkpoint still reaches the standby.
  for server in primary standby; do
    if pair_running "$server"; then
      log "stopping the pair's $server"
      as_postgres "$PG_BIN/pg_ctl" -D "$PAIR_DIR/$server/data" -m fast -w stop >/dev/null
    fi
  done
}

purge_pair() {
  stop_pair
  log "deleting $PAIR_DIR"
  rm -rf "$PAIR_DIR" "$LOCAL/pair.env"
}

start_servers() {
  install_packages
  tls_certs
  start_postgres
  database_roles candlecast candlecast_
  start_rabbit
  broker_users /
  write_env
  log "ready: source $LOCAL/env"
}

case "${1:-}" in
  start) start_servers ;;
  stop) stop_rabbit; stop_postgres ;;
  restart) stop_rabbit; stop_postgres; start_servers ;;
  purge)
    stop_rabbit; stop_postgres
    log "deleting $RABBIT_DIR and $PG_DIR"
    rm -rf "$RABBIT_DIR" "$PG_DIR"
    # The pair lives in the same /var/lib folder: stopped before the folder goes.
    if [ "$PG_DIR" != "$LOCAL/postgres" ]; then
      [ -d "$PAIR_DIR" ] && purge_pair
      rm -rf "$(dirname "$PG_DIR")"
    fi
    ;;
  status)
    rabbit_running && echo "rabbitmq: running on $AMQP_PORT, data in $RABBIT_DIR" || echo "rabbitmq: stopped"
    pg_running && echo "postgres: running on $PG_PORT, data in $PG_DIR/data" || echo "postgres: stopped"
    ;;
  rabbit-stop-app) main_ctl -q stop_app ;;
  rabbit-start-app) main_ctl -q start_app ;;
  rabbit-restart) stop_rabbit; start_rabbit ;;
  # A virtual host of its own isolates a test's queues from every other run on the same broker.
  vhost-add)
    main_ctl -q add_vhost "${2:?vhost name}" >/dev/null
    main_ctl -q set_permissions -p "$2" candlecast '.*' '.*' '.*' >/dev/null ;;
  broker-users) broker_users "${2:?vhost name}" ;;
  database-roles) database_roles "${2:?database}" "${3:?role prefix}" ;;
  database-roles-drop) drop_database_roles "${2:?role prefix}" ;;
  service-env) service_env "${2:?service}" ;;
  vhost-delete) main_ctl -q delete_vhost "${2:?vhost name}" >/dev/null ;;
  postgres-restart)
    tls_certs
    postgres_tls_files
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w restart -o "$(postgres_options)" >/dev/null ;;
  tls-certs) tls_certs; ls -l "$TLS_DIR" ;;
  cluster-start) install_packages; start_cluster ;;
  # (n=$(...) rather than an argument: an assignment stops the script when the number is refused)
  cluster-node-stop) n=$(cluster_node_number "${2:-}"); stop_cluster_node "$n" ;;
  cluster-node-kill) n=$(cluster_node_number "${2:-}"); kill_cluster_node "$n" ;;
  cluster-node-start)
    n=$(cluster_node_number "${2:-}")
    if cluster_node_running "$n"; then log "cluster node $(cluster_node "$n") already running"; else launch_cluster_node "$n"; fi
    await_cluster_node "$n" ;;
  cluster-vhost-add)
    cluster_ctl -q add_vhost "${2:?vhost name}" >/dev/null
    cluster_ctl -q set_permissions -p "$2" candlecast '.*' '.*' '.*' >/dev/null ;;
  cluster-vhost-delete) cluster_ctl -q delete_vhost "${2:?vhost name}" >/dev/null ;;
  cluster-broker-users) broker_users "${2:?vhost name}" cluster_ctl ;;
  cluster-connections) cluster_connections ;;
  cluster-status) cluster_status ;;
  cluster-stop) stop_cluster ;;
  cluster-purge) stop_cluster; log "deleting $CLUSTER_DIR"; rm -rf "$CLUSTER_DIR" "$LOCAL/cluster.env" ;;
  pg-pair-start) install_packages; start_pair ;;
  pg-pair-stop-primary)
    if pair_running primary; then
      log "crashing the pair's primary (immediate stop)"
      as_postgres "$PG_BIN/pg_ctl" -D "$PAIR_DIR/primary/data" -m immediate -w stop >/dev/null
    fi ;;
  pg-pair-promote) promote_pair_standby ;;
  pg-pair-status) pair_status ;;
  pg-pair-stop) stop_pair ;;
  pg-pair-purge) purge_pair ;;
  pg-pair-reset) purge_pair; install_packages; start_pair ;;
  *)
    echo "usage: $0 start|stop|restart|purge|status|rabbit-stop-app|rabbit-start-app|rabbit-restart|postgres-restart|vhost-add NAME|vhost-delete NAME|broker-users VHOST|database-roles DB PREFIX|database-roles-drop PREFIX|service-env SERVICE|tls-certs" >&2
    echo "       $0 cluster-start|cluster-stop|cluster-purge|cluster-status|cluster-connections|cluster-node-stop N|cluster-node-kill N|cluster-node-start N|cluster-vhost-add NAME|cluster-vhost-delete NAME|cluster-broker-users VHOST" >&2
    echo "       $0 pg-pair-start|pg-pair-stop|pg-pair-purge|pg-pair-reset|pg-pair-status|pg-pair-stop-primary|pg-pair-promote" >&2
    exit 2 ;;
esac
