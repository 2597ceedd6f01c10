#!/bin/sh
# One-shot step of the cluster variant (the postgres-replication service), before the standby starts: the role
# the standby streams as, `replicator` (REPLICATION and LOGIN, nothing else), created, or its password set to
# CANDLECAST_PG_REPLICATION_PASSWORD. Idempotent: run at every `up`, on a new primary or on one the base file
# has run. Connects as the administrator (PGHOST, PGUSER, PGPASSWORD, PGDATABASE from compose), with
# synchronous_commit=local in PGOPTIONS: the primary waits for its standby on every other commit, and the
# standby is not there yet.
set -eu
for _ in $(seq 1 60); do
  pg_isready -q && break
  sleep 2
done
psql -v ON_ERROR_STOP=1 -q -v pw="$CANDLECAST_PG_REPLICATION_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE replicator REPLICATION LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec
SELECT format('ALTER ROLE replicator WITH REPLICATION LOGIN PASSWORD %L', :'pw') \gexec
SQL
echo "replication role: replicator"
