import ServiceKit
import Storage

/// The `features` schema. Dataset versions are immutable snapshots: their rows are stored with them, so
/// a candle revised later never changes a version that was trained on.
enum FeaturesSchema {
    static let name = "features"

    static let migrations = SchemaMigrations(
        schema: name,
        migrations: [
            Migration(
                version: 1, name: "dataset versions",
                sql: """
                    CREATE TABLE dataset_versions (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        version integer NOT NULL,
                        feature text NOT NULL,
                        window_length integer NOT NULL,
                        row_count integer NOT NULL,
                        first_open_time bigint NOT NULL,
                        last_open_time bigint NOT NULL,
                        content_hash text NOT NULL,
                        hash_algorithm text NOT NULL DEFAULT 'fnv1a64',
                        training_end integer NOT NULL,
                        validation_fraction double precision NOT NULL,
                        scaler_minimum double precision NOT NULL,
                        scaler_maximum double precision NOT NULL,
                        open_times bigint[] NOT NULL,
                        closes numeric[] NOT NULL,
                        reason text NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds, version),
                        UNIQUE (pair, interval_seconds, content_hash),
                        CHECK (training_end > window_length AND training_end < row_count AND scaler_maximum > scaler_minimum)
                    );
                    -- Each candle event (and revision) is processed once.
                    CREATE TABLE processed_candles (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        open_time bigint NOT NULL,
                        revision integer NOT NULL,
                        processed_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds, open_time, revision)
                    );
                    -- The read contract for the trainer and the registry.
                    CREATE VIEW dataset_versions_v1 AS
                        SELECT pair, interval_seconds, version, feature, window_length, row_count, first_open_time, last_open_time,
                               content_hash, training_end, validation_fraction, scaler_minimum, scaler_maximum, open_times, closes,
                               created_at
                        FROM dataset_versions;
                    """),
            Outbox.migration(version: 2),
            Migration(
                version: 3, name: "volume feature",
                sql: """
                    ALTER TABLE dataset_versions ADD COLUMN volumes numeric[];
                    CREATE OR REPLACE VIEW dataset_versions_v1 AS
                        SELECT pair, interval_seconds, version, feature, window_length, row_count, first_open_time, last_open_time,
                               content_hash, training_end, validation_fraction, scaler_minimum, scaler_maximum, open_times, closes,
                               created_at, volumes
                        FROM dataset_versions;
                    """),
            Migration(
                version: 4, name: "read contract for every role",
                sql: """
                    -- dataset_versions_v1 is what the registry and the trainers read here; with a role per service it is
                    -- all they can see of this schema.
                    GRANT USAGE ON SCHEMA features TO PUBLIC;
                    GRANT SELECT ON dataset_versions_v1 TO PUBLIC;
                    """),
            // The ForecastSpec a version was cut under (its window, features, split, scaler, horizon) is what the
            // trainer trains under and the registry stores with each model. Versions cut before it get theirs from
            // their columns; their train fraction is training_end / row_count to hundredths (fractions are set in
            // hundredths), and their stored training_end stays the authority on the split either way.
            Migration(
                version: 5, name: "forecast spec",
                sql: """
                    ALTER TABLE dataset_versions ADD COLUMN spec jsonb;
                    UPDATE dataset_versions SET spec = jsonb_build_object(
                        'window', window_length, 'features', feature, 'target', 'log-return', 'activation', 'relu',
                        'split', jsonb_build_object(
                            'train', round(training_end::numeric / row_count, 2), 'validation', validation_fraction),
                        'scaler', 'min-max-training-rows', 'horizon', 1);
                    ALTER TABLE dataset_versions ALTER COLUMN spec SET NOT NULL;
                    CREATE OR REPLACE VIEW dataset_versions_v1 AS
                        SELECT pair, interval_seconds, version, feature, window_length, row_count, first_open_time, last_open_time,
                               content_hash, training_end, validation_fraction, scaler_minimum, scaler_maximum, open_times, closes,
                               created_at, volumes, spec
                        FROM dataset_versions;
                    """),
            Outbox.lz4Migration(version: 6),
        ])
}
