# What the pipeline benchmarks (bench-load.sh, bench-pairs.sh) share: sourced, not run.
# pipeline_setup NAME      the local servers, release builds in $bin, a clean work folder .local/NAME ($work), say()
# pipeline_isolate NAME    a fresh database candlecast_NAME ($database_url) and vhost candlecast-NAME, a registry token,
#                          exported for every service started after it; sql "QUERY" runs against that database
# start ROLE EXE PORT [VAR=value...]   a service in the background, its log in $work/ROLE.log, stopped on exit
# rss ROLE                 its resident memory in kB; depth QUEUE: the messages waiting on QUEUE in the vhost
# cpu ROLE                 the CPU seconds (user + system) it has used so far; cpu_servers: PostgreSQL's and RabbitMQ's

pipeline_setup() {
  scripts/servers.sh start >/dev/null
  # shellcheck source=/dev/null
  source .local/env
  swift build -c release 2>&1 | tail -1
  bin=$(swift build -c release --show-bin-path)
  work=.local/$1
  rm -rf "$work" && mkdir -p "$work"
  bench_name=$1
  say() { printf '[%s] %s %s\n' "$bench_name" "$(date +%T)" "$*" >&2; }
}

pipeline_isolate() {
  database_url="${CANDLECAST_DATABASE_URL%/*}/candlecast_$1"
  vhost=candlecast-$1
  export PGPASSWORD
  PGPASSWORD=$(cat "$CANDLECAST_DATABASE_PASSWORD_FILE")
  psql -q "$CANDLECAST_DATABASE_URL" -c "DROP DATABASE IF EXISTS candlecast_$1 WITH (FORCE)" -c "CREATE DATABASE candlecast_$1"
  scripts/servers.sh vhost-delete "$vhost" 2>/dev/null || true
  scripts/servers.sh vhost-add "$vhost"
  token=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  export CANDLECAST_DATABASE_URL=$database_url CANDLECAST_AMQP_URL="${CANDLECAST_AMQP_URL%/}/$vhost" CANDLECAST_REGISTRY_TOKEN=$token
  export CANDLECAST_LOG_LEVEL=warning
}

sql() { psql -Atq "$database_url" -c "$1"; }

declare -A pid
start() {
  local role=$1 executable=$2 port=$3
  shift 3
  env CANDLECAST_HTTP_PORT="$port" "$@" "$bin/$executable" >"$work/$role.log" 2>&1 &
  pid[$role]=$!
}
pipeline_cleanup() { for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap pipeline_cleanup EXIT

rss() { awk '/VmRSS/ {print $2}' "/proc/${pid[$1]}/status"; }
cpu() { awk -v tick="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tick}' "/proc/${pid[$1]}/stat"; }
cpu_servers() { ps -C postgres,beam.smp -o cputimes= | awk '{s += $1} END {printf "%.2f\n", s}'; }
depth() {
  HOME=.local/rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "candlecast-${CANDLECAST_AMQP_PORT:-5672}@localhost" list_queues \
    -p "$vhost" name messages 2>/dev/null | awk -v q="$1" '$1 == q {print $2}'
}
