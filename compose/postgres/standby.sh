#!/usr/bin/env bash
# Entry point of postgres-standby (compose/docker-compose.cluster.yml). On the first start (an empty volume) a
# copy of the primary by pg_basebackup, as `replicator` with application_name candlecast_standby, the name the
# primary's synchronous_standby_names waits for on each commit; -R makes the copy a standby that streams from
# the primary, through the replication slot candlecast_standby (the primary keeps the WAL it has not received).
# Later starts only start the server: still a standby, or the primary once promoted. Then the image's own entry
# point with the command.
set -euo pipefail
primary=${CANDLECAST_PG_PRIMARY_HOST:-postgres}
port=${CANDLECAST_PG_PRIMARY_PORT:-5432}
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi
# The password file primary_conninfo names: rewritten from compose/.env at every start, outside the data
# directory, so the password is never copied into it.
passfile=/var/lib/postgresql/replication.pgpass
password=$(printf '%s' "${CANDLECAST_PG_REPLICATION_PASSWORD:?set CANDLECAST_PG_REPLICATION_PASSWORD in compose/.env}" | sed 's/[\\:]/\\&/g')
(umask 077; printf '*:*:*:replicator:%s\n' "$password" > "$passfile")
export PGPASSFILE=$passfile
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  for _ in $(seq 1 60); do
    pg_isready -q -h "$primary" -p "$port" && break
    sleep 2
  done
  conninfo="host=$primary port=$port user=replicator application_name=candlecast_standby"
  # A slot an earlier copy left (this volume was emptied since) would make -C fail; a slot in use is refused.
  pg_receivewal --drop-slot --slot=candlecast_standby -d "$conninfo" 2>/dev/null || true
  echo "standby: copying $primary:$port into $PGDATA (pg_basebackup)"
  pg_basebackup -D "$PGDATA" -d "$conninfo" -X stream -C -S candlecast_standby -R -c fast
fi
exec docker-entrypoint.sh "$@"
