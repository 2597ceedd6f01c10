import ServiceKit
import Storage

/// The `predictions` schema: forecasts with their realized errors, and windows waiting for a first model.
enum PredictionsSchema {
    static let name = "predictions"

    static let migrations = SchemaMigrations(
        schema: name,
        migrations: [
            Migration(
                version: 1, name: "forecasts",
                sql: """
                    CREATE TABLE forecasts (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        model_name text NOT NULL,
                        model_version integer NOT NULL,
                        dataset_version integer NOT NULL,
                        window_end_open_time bigint NOT NULL,
                        predicted_close double precision NOT NULL,
                        last_close double precision NOT NULL,
                        stale boolean NOT NULL,
                        produced_at timestamptz NOT NULL DEFAULT now(),
                        actual_close double precision,
                        error double precision,
                        absolute_error double precision,
                        percentage_error double precision,
                        naive_absolute_error double precision,
                        scored_at timestamptz,
                        PRIMARY KEY (pair, interval_seconds, target_open_time, model_version)
                    );
                    CREATE INDEX forecasts_latest ON forecasts (pair, interval_seconds, produced_at DESC);
                    -- Windows that arrived before any champion existed: forecast once one is promoted.
                    CREATE TABLE pending_windows (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        payload text NOT NULL,
                        received_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds, target_open_time)
                    );
                    """),
            Outbox.migration(version: 2),
            Migration(
                version: 3, name: "actuals",
                sql: """
                    -- Actual closes seen on candle.closed. Events can overtake each other (a candle before the
                    -- window that forecasts it, after downtime or in a fast replay): a forecast stored after its
                    -- actual is scored at once from here.
                    CREATE TABLE actuals (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        open_time bigint NOT NULL,
                        close double precision NOT NULL,
                        PRIMARY KEY (pair, interval_seconds, open_time)
                    );
                    """),
            Migration(
                version: 4, name: "forecast uncertainty",
                sql: """
                    -- The forecast's intervals ([{level, lower, upper}], IntervalLevels order) and P(close above
                    -- last_close): NULL for a model without calibration. Beside them the naive reference
                    -- (NaiveBaseline.reference on every close of the window), which every forecast is scored against.
                    ALTER TABLE forecasts
                        ADD COLUMN intervals jsonb,
                        ADD COLUMN probability_up double precision,
                        ADD COLUMN naive_intervals jsonb,
                        ADD COLUMN naive_probability_up double precision,
                        -- At scoring: per level hit, width and Winkler score (IntervalOutcome), and the Brier scores.
                        ADD COLUMN interval_outcomes jsonb,
                        ADD COLUMN brier double precision,
                        ADD COLUMN naive_interval_outcomes jsonb,
                        ADD COLUMN naive_brier double precision;
                    """),
            Outbox.lz4Migration(version: 5),
            Migration(
                version: 6, name: "actual revisions",
                sql: """
                    -- The candle revision the actual comes from: a redelivered older revision (after a newer one) must
                    -- not take the actual, and the scores, back.
                    ALTER TABLE actuals ADD COLUMN revision integer NOT NULL DEFAULT 0;
                    """),
        ])
}
