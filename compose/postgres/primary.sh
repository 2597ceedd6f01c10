#!/usr/bin/env bash
# Entry point of the primary (the postgres service) in the cluster variant (compose/docker-compose.cluster.yml):
# refuses to start beside a promoted standby. After a failover postgres-standby takes the writes; this server,
# started again with its old data, would be a second primary, and the services list it first. So when the
# standby answers and is not in recovery, exit (the container restarts and refuses again, the log says why)
# until the operator rebuilds this server from the new primary. Otherwise the image's own entry point.
set -euo pipefail
standby=${CANDLECAST_PG_STANDBY_HOST:-postgres-standby}
if [ -s "$PGDATA/PG_VERSION" ] && pg_isready -q -h "$standby" -t 5; then
  in_recovery=$(PGPASSWORD=$POSTGRES_PASSWORD PGCONNECT_TIMEOUT=5 psql -h "$standby" -U "$POSTGRES_USER" \
    -d "${POSTGRES_DB:-$POSTGRES_USER}" -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null || true)
  if [ "$in_recovery" = f ]; then
    echo "postgres: $standby has been promoted and takes the writes; not starting a second primary." >&2
    echo "postgres: rebuild this server as its standby, or start over from a backup (compose/docker-compose.cluster.yml)." >&2
    exit 1
  fi
fi
exec docker-entrypoint.sh "$@"
