import ServiceKit
import Storage

/// The `ingest` schema. `candles_v1` is the read contract other services may query; the tables behind it
/// are the ingestor's own and may change.
enum IngestSchema {
    static let name = "ingest"

    static let migrations = SchemaMigrations(
        schema: name,
        migrations: [
            Migration(
                version: 1, name: "candles",
                sql: """
                    CREATE TABLE candles (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        open_time bigint NOT NULL,
                        open numeric NOT NULL CHECK (open > 0),
                        high numeric NOT NULL CHECK (high > 0),
                        low numeric NOT NULL CHECK (low > 0),
                        close numeric NOT NULL CHECK (close > 0),
                        vwap numeric,
                        volume numeric NOT NULL CHECK (volume >= 0),
                        trades integer,
                        source text NOT NULL,
                        revision integer NOT NULL DEFAULT 0,
                        ingested_at timestamptz NOT NULL DEFAULT now(),
                        revised_at timestamptz,
                        PRIMARY KEY (pair, interval_seconds, open_time),
                        CHECK (low <= open AND low <= close AND open <= high AND close <= high)
                    );
                    CREATE TABLE rejected_candles (
                        id bigserial PRIMARY KEY,
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        source text NOT NULL,
                        raw text NOT NULL,
                        reason text NOT NULL,
                        rejected_at timestamptz NOT NULL DEFAULT now()
                    );
                    CREATE UNIQUE INDEX rejected_candles_once ON rejected_candles (pair, interval_seconds, source, md5(raw));
                    -- Kraken omits intervals without trades: each run of missing candles is recorded, never invented.
                    CREATE TABLE gaps (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        after_open_time bigint NOT NULL,
                        missing_intervals integer NOT NULL,
                        detected_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds, after_open_time)
                    );
                    -- Kraken's `last` per pair and interval: the next poll's `since`.
                    CREATE TABLE cursors (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        since bigint NOT NULL,
                        updated_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds)
                    );
                    -- Backfill progress per file, so that an interrupted backfill resumes.
                    CREATE TABLE backfill_files (
                        fingerprint text PRIMARY KEY,
                        path text NOT NULL,
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        lines_done bigint NOT NULL DEFAULT 0,
                        completed_at timestamptz
                    );
                    CREATE VIEW candles_v1 AS
                        SELECT pair, interval_seconds, open_time, open, high, low, close, volume, trades, revision FROM candles;
                    """),
            Outbox.migration(version: 2),
            Migration(
                version: 3, name: "read contract for every role",
                sql: """
                    -- candles_v1 is the one thing other services read here (candles are public market data); the
                    -- tables behind it stay the ingestor's. With a role per service this is all the others can see.
                    GRANT USAGE ON SCHEMA ingest TO PUBLIC;
                    GRANT SELECT ON candles_v1 TO PUBLIC;
                    """),
            Migration(
                version: 4, name: "tracked series",
                sql: """
                    -- Series added to a running system (`ingestor pairs add`), polled besides CANDLECAST_INGEST_PAIRS';
                    -- the service re-reads this table every CANDLECAST_INGEST_PAIRS_REFRESH_SECONDS.
                    CREATE TABLE tracked_series (
                        pair text NOT NULL,
                        interval_seconds integer NOT NULL,
                        added_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (pair, interval_seconds)
                    );
                    """),
            Outbox.lz4Migration(version: 5),
        ])
}
