import ServiceKit
import Storage

/// The `registry` schema: what MLflow tracked, plus the history of every alias move.
enum RegistrySchema {
    static let name = "registry"

    static let migrations = SchemaMigrations(
        schema: name,
        migrations: [
            Migration(
                version: 1, name: "tracking and registry",
                sql: """
                    CREATE TABLE experiments (
                        name text PRIMARY KEY,
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now()
                    );
                    CREATE TABLE sweeps (
                        id uuid PRIMARY KEY,
                        experiment text NOT NULL REFERENCES experiments (name),
                        model_name text NOT NULL,
                        dataset_version integer NOT NULL,
                        grid jsonb NOT NULL,
                        trigger text NOT NULL,
                        job_count integer NOT NULL,
                        decided_at timestamptz,
                        created_at timestamptz NOT NULL DEFAULT now()
                    );
                    -- An automatic sweep per dataset version, whatever how often dataset.ready is delivered.
                    CREATE UNIQUE INDEX sweeps_once_per_dataset ON sweeps (experiment, dataset_version) WHERE trigger = 'dataset.ready';
                    CREATE TABLE runs (
                        id bigserial PRIMARY KEY,
                        job_id uuid NOT NULL UNIQUE,
                        sweep_id uuid NOT NULL REFERENCES sweeps (id),
                        experiment text NOT NULL REFERENCES experiments (name),
                        status text NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed')),
                        params jsonb NOT NULL,
                        dataset_version integer NOT NULL,
                        trainer text,
                        error text,
                        epochs_run integer,
                        best_epoch integer,
                        validation_loss double precision,
                        test_metrics jsonb,
                        naive_metrics jsonb,
                        train_seconds double precision,
                        queued_at timestamptz NOT NULL DEFAULT now(),
                        started_at timestamptz,
                        ended_at timestamptz
                    );
                    CREATE TABLE run_metrics (
                        run_id bigint NOT NULL REFERENCES runs (id),
                        key text NOT NULL,
                        step integer NOT NULL,
                        value double precision NOT NULL,
                        recorded_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (run_id, key, step)
                    );
                    CREATE TABLE artifacts (
                        run_id bigint PRIMARY KEY REFERENCES runs (id),
                        name text NOT NULL,
                        content bytea NOT NULL,
                        byte_count integer NOT NULL,
                        crc32 bigint NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now()
                    );
                    CREATE TABLE registered_models (
                        name text PRIMARY KEY,
                        experiment text NOT NULL REFERENCES experiments (name),
                        created_at timestamptz NOT NULL DEFAULT now()
                    );
                    CREATE TABLE model_versions (
                        model_name text NOT NULL REFERENCES registered_models (name),
                        version integer NOT NULL,
                        run_id bigint NOT NULL UNIQUE REFERENCES runs (id),
                        dataset_version integer NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (model_name, version)
                    );
                    CREATE TABLE aliases (
                        model_name text NOT NULL REFERENCES registered_models (name),
                        alias text NOT NULL,
                        version integer NOT NULL,
                        updated_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (model_name, alias),
                        FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
                    );
                    CREATE TABLE alias_history (
                        id bigserial PRIMARY KEY,
                        model_name text NOT NULL,
                        alias text NOT NULL,
                        from_version integer,
                        to_version integer NOT NULL,
                        actor text NOT NULL,
                        reason text NOT NULL,
                        moved_at timestamptz NOT NULL DEFAULT now()
                    );
                    -- Every gate decision, promoted or not, with its reason.
                    CREATE TABLE promotion_decisions (
                        sweep_id uuid PRIMARY KEY REFERENCES sweeps (id),
                        model_name text NOT NULL,
                        challenger_version integer,
                        champion_version integer,
                        promoted boolean NOT NULL,
                        reason text NOT NULL,
                        challenger_rmse double precision,
                        champion_rmse double precision,
                        challenger_mase double precision,
                        decided_at timestamptz NOT NULL DEFAULT now()
                    );
                    """),
            Outbox.migration(version: 2),
            // An artifact is identified by the SHA-256 of its bytes (the CRC-32 of a model file that ends with its own
            // CRC-32 is the same constant for every file). Existing rows get theirs computed from their content.
            Migration(
                version: 3, name: "artifact_sha256",
                sql: """
                    ALTER TABLE artifacts ADD COLUMN sha256 text;
                    UPDATE artifacts SET sha256 = encode(sha256(content), 'hex');
                    ALTER TABLE artifacts ALTER COLUMN sha256 SET NOT NULL;
                    ALTER TABLE artifacts ADD CONSTRAINT artifacts_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$');
                    """),
            // Training leases: a running run is renewed by its trainer's epoch metrics (heartbeat); the sweeper
            // requeues an expired one (attempts bounded) or fails it with "trainer lost". A newer dataset version
            // supersedes the still-queued runs of older automatic sweeps of the same model.
            Migration(
                version: 4, name: "training leases and superseded runs",
                sql: """
                    ALTER TABLE runs ADD COLUMN heartbeat_at timestamptz;
                    ALTER TABLE runs ADD COLUMN lease_expires_at timestamptz;
                    ALTER TABLE runs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
                    ALTER TABLE runs DROP CONSTRAINT runs_status_check;
                    ALTER TABLE runs ADD CONSTRAINT runs_status_check
                        CHECK (status IN ('queued', 'running', 'finished', 'failed', 'superseded'));
                    CREATE INDEX runs_running_lease ON runs (lease_expires_at) WHERE status = 'running';
                    CREATE INDEX runs_queued_sweep ON runs (sweep_id) WHERE status = 'queued';
                    """),
            // The ForecastSpec of each run (composed at sweep start from the dataset version's and the grid point) and
            // of each model version; the rows each run was scored on, and the rows the gate compared challenger and
            // champion on. Rows from before have no spec (their model files carry one) and no ranges.
            Migration(
                version: 5, name: "forecast spec and test rows",
                sql: """
                    ALTER TABLE runs ADD COLUMN spec jsonb;
                    ALTER TABLE runs ADD COLUMN test_start integer;
                    ALTER TABLE runs ADD COLUMN test_end integer;
                    ALTER TABLE model_versions ADD COLUMN spec jsonb;
                    ALTER TABLE promotion_decisions ADD COLUMN challenger_test_start integer;
                    ALTER TABLE promotion_decisions ADD COLUMN challenger_test_end integer;
                    ALTER TABLE promotion_decisions ADD COLUMN champion_test_start integer;
                    ALTER TABLE promotion_decisions ADD COLUMN champion_test_end integer;
                    """),
            // Baselines are model versions too: each run's model family (rows from before trained LSTMs), its scores on
            // the sweep's validation rows (what ranks the candidates), and its interval and Brier scores; each gate
            // decision's MASE of the champion and 80 % Winkler score of both.
            Migration(
                version: 6, name: "model families, validation and distribution scores",
                sql: """
                    ALTER TABLE runs ADD COLUMN model text NOT NULL DEFAULT 'lstm';
                    ALTER TABLE runs ADD COLUMN validation_metrics jsonb;
                    ALTER TABLE runs ADD COLUMN validation_start integer;
                    ALTER TABLE runs ADD COLUMN validation_end integer;
                    ALTER TABLE runs ADD COLUMN test_distribution jsonb;
                    ALTER TABLE runs ADD COLUMN naive_distribution jsonb;
                    ALTER TABLE runs ADD COLUMN validation_distribution jsonb;
                    ALTER TABLE promotion_decisions ADD COLUMN champion_mase double precision;
                    ALTER TABLE promotion_decisions ADD COLUMN challenger_winkler80 double precision;
                    ALTER TABLE promotion_decisions ADD COLUMN champion_winkler80 double precision;
                    """),
            Outbox.lz4Migration(version: 7),
        ])
}
