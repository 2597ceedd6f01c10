#!/bin/sh
# First start of the PostgreSQL container: a role per service, each owning only its schema
# (scripts/database-roles.sql, the same script the local servers use).
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v prefix=candlecast_ -v admin="$POSTGRES_USER" \
  -v pw_ingestor="$CANDLECAST_DB_PASSWORD_INGESTOR" -v pw_preprocessor="$CANDLECAST_DB_PASSWORD_PREPROCESSOR" \
  -v pw_registry="$CANDLECAST_DB_PASSWORD_REGISTRY" -v pw_predictor="$CANDLECAST_DB_PASSWORD_PREDICTOR" \
  -v pw_monitor="$CANDLECAST_DB_PASSWORD_MONITOR" -v pw_trainer="$CANDLECAST_DB_PASSWORD_TRAINER" \
  < /candlecast/database-roles.sql
