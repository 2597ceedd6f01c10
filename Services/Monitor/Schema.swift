import ServiceKit
import Storage

/// The `monitor` schema: what the monitor heard on the bus, kept so that its rolling metrics, freshness and
/// dashboard survive a restart. Every table has the event's natural key, so redelivered events change nothing.
enum MonitorSchema {
    static let name = "monitor"

    static let migrations = SchemaMigrations(
        schema: name,
        migrations: [
            Migration(
                version: 1, name: "observations",
                sql: """
                    CREATE TABLE forecasts (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        model_name text NOT NULL,
                        model_version integer NOT NULL,
                        predicted_close double precision NOT NULL,
                        last_close double precision NOT NULL,
                        stale boolean NOT NULL,
                        produced_at timestamptz NOT NULL,
                        PRIMARY KEY (pair, interval_seconds, target_open_time, model_version)
                    );
                    CREATE TABLE scores (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        model_name text NOT NULL,
                        model_version integer NOT NULL,
                        predicted_close double precision NOT NULL,
                        actual_close double precision NOT NULL,
                        absolute_error double precision NOT NULL,
                        percentage_error double precision NOT NULL,
                        naive_absolute_error double precision NOT NULL,
                        scored_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds, target_open_time, model_version)
                    );
                    -- The newest closed candle per series: what freshness is measured from.
                    CREATE TABLE latest_candles (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        open_time bigint NOT NULL,
                        close double precision,
                        PRIMARY KEY (pair, interval_seconds)
                    );
                    CREATE TABLE champions (
                        model_name text PRIMARY KEY,
                        version integer NOT NULL,
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        promoted_at timestamptz NOT NULL DEFAULT now()
                    );
                    """),
            // Forecast intervals and up probabilities, and how they scored (issue 15). Events from producers that send
            // none leave the new column null and add no interval rows.
            Migration(
                version: 2, name: "intervals",
                sql: """
                    ALTER TABLE forecasts ADD COLUMN probability_up double precision;
                    CREATE TABLE forecast_intervals (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        model_version integer NOT NULL,
                        level double precision NOT NULL,
                        lower double precision NOT NULL,
                        upper double precision NOT NULL,
                        PRIMARY KEY (pair, interval_seconds, target_open_time, model_version, level),
                        FOREIGN KEY (pair, interval_seconds, target_open_time, model_version) REFERENCES forecasts ON DELETE CASCADE
                    );
                    ALTER TABLE scores ADD COLUMN brier double precision, ADD COLUMN naive_brier double precision;
                    CREATE TABLE score_intervals (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        target_open_time bigint NOT NULL,
                        model_version integer NOT NULL,
                        level double precision NOT NULL,
                        hit boolean NOT NULL,
                        winkler double precision NOT NULL,
                        naive_hit boolean,
                        naive_winkler double precision,
                        PRIMARY KEY (pair, interval_seconds, target_open_time, model_version, level),
                        FOREIGN KEY (pair, interval_seconds, target_open_time, model_version) REFERENCES scores ON DELETE CASCADE
                    );
                    """),
        ])
}
