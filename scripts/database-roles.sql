-- A PostgreSQL role per Candlecast service, each owning only its schema (SECURITY.md). Run as a superuser in
-- the service database with psql variables: prefix (role names are <prefix><service>), admin (the operator role,
-- made a member of every service role), pw_ingestor, pw_preprocessor, pw_registry, pw_predictor, pw_monitor,
-- pw_trainer. Idempotent: it also hands over schemas created before the roles existed.
--   used by scripts/servers.sh (local servers, the tests) and compose/postgres/roles.sh (compose)
\set ON_ERROR_STOP on
CREATE TEMP TABLE service_roles (role text, schema text, password text);
INSERT INTO service_roles VALUES
    (:'prefix' || 'ingestor', 'ingest', :'pw_ingestor'),
    (:'prefix' || 'preprocessor', 'features', :'pw_preprocessor'),
    (:'prefix' || 'registry', 'registry', :'pw_registry'),
    (:'prefix' || 'predictor', 'predictions', :'pw_predictor'),
    (:'prefix' || 'monitor', 'monitor', :'pw_monitor'),
    -- The trainer keeps no state: its role owns nothing and reads only the published views.
    (:'prefix' || 'trainer', NULL, :'pw_trainer');
SELECT format('CREATE ROLE %I LOGIN', role) FROM service_roles WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', role, password) FROM service_roles \gexec
SELECT format('GRANT %I TO %I', role, :'admin') FROM service_roles \gexec
-- Nobody but the owner creates schemas; nobody creates in public.
SELECT format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database()) \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', schema, role) FROM service_roles WHERE schema IS NOT NULL \gexec
-- Schemas made before the roles existed (or by another role) are handed over with everything in them.
SELECT format('ALTER SCHEMA %I OWNER TO %I', schema, role) FROM service_roles WHERE schema IS NOT NULL \gexec
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, r.role)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN service_roles r ON r.schema = n.nspname
    WHERE c.relkind IN ('r', 'v', 'p') \gexec
