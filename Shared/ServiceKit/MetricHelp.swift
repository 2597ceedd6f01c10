/// The HELP text of every metric a Candlecast service exports, in one place.
///
/// Metrics are created through swift-metrics, whose API has no help text, so `/metrics` adds the HELP
/// lines from here when it renders (see `annotate`). A test keeps this list in step with the sources.
public enum MetricHelp {
    public static let catalogue: [String: String] = [
        // Every service (shared libraries).
        "candlecast_messages_received_total": "Messages delivered to this service, by queue.",
        "candlecast_messages_dead_lettered_total": "Messages this service sent to its dead-letter queue, by queue.",
        "candlecast_message_batches_total": "Batches of more than one message handled and committed together, by queue.",
        "candlecast_messages_published_total": "Messages published and confirmed by the broker.",
        "candlecast_publish_failures_total": "Publishes that failed (nacked, timed out or lost with the connection).",
        "candlecast_broker_reconnections_total": "Reconnections to RabbitMQ, by role (publisher or consumer).",
        "candlecast_database_reconnections_total": "Reconnections to PostgreSQL.",
        "candlecast_outbox_published_total": "Outbox rows relayed to the broker, by schema.",
        "candlecast_outbox_backlog": "Outbox rows not yet relayed to the broker (a count of the unpublished rows), by schema.",
        "candlecast_outbox_pruned_total":
            "Published outbox rows deleted after the retention (CANDLECAST_OUTBOX_RETENTION_HOURS), by schema.",
        // Ingestor.
        "candlecast_candles_stored_total":
            "Closed candles stored from Kraken's REST API, by pair, interval and outcome (inserted or revised).",
        "candlecast_candles_rejected_total": "Candles from Kraken rejected as invalid, by pair and interval.",
        "candlecast_kraken_errors_total": "Failed Kraken requests, by kind of failure.",
        "candlecast_ingest_series_polled":
            "Pairs and intervals the ingestor polls: CANDLECAST_INGEST_PAIRS' and those added with `candlecast pairs add`.",
        // Trainer.
        "candlecast_training_jobs_total": "Training jobs this trainer finished, by result.",
        // Predictor.
        "candlecast_forecasts_total": "Forecasts this predictor made, by pair and interval.",
        "candlecast_forecasts_scored_total": "Forecasts this predictor scored against their actual candle, by pair and interval.",
        // Monitor.
        "candlecast_events_total": "Events seen on candlecast.events, by producing service and message type.",
        "candlecast_forecast_absolute_error_usd": "Absolute error of each scored forecast in USD, by pair, interval and model version.",
        "candlecast_forecast_absolute_percentage_error":
            "Absolute percentage error (0-100) of each scored forecast, by pair, interval and model version.",
        "candlecast_forecast_rolling_mae_usd":
            "Mean absolute error in USD of the last N scored forecasts, by pair, interval and model version.",
        "candlecast_forecast_rolling_rmse_usd":
            "Root mean squared error in USD of the last N scored forecasts, by pair, interval and model version.",
        "candlecast_forecast_rolling_mape":
            "Mean absolute percentage error (0-100) of the last N scored forecasts, by pair, interval and model version.",
        "candlecast_forecast_rolling_mase":
            "Model MAE over the naive forecast's MAE on the same last N days (below 1 beats naive), by pair, interval and model version.",
        "candlecast_naive_rolling_mae_usd": "Mean absolute error in USD of the naive forecast (tomorrow = today) on the same last N days.",
        "candlecast_forecast_rolling_window_forecasts": "Scored forecasts in the rolling window, by pair, interval and model version.",
        "candlecast_forecast_coverage_window_forecasts":
            "Scored forecasts with intervals in the window (the newest, at most 60) the rolling coverage, Winkler and Brier "
            + "figures are taken over, by pair, interval and model version.",
        "candlecast_forecast_rolling_coverage":
            "Share (0-1) of the last 60 actual closes inside the forecast interval, by pair, interval, model version and level.",
        "candlecast_naive_rolling_coverage":
            "Share (0-1) of the same days' actual closes inside the naive baseline's interval, by pair, interval, model version and level.",
        "candlecast_forecast_rolling_winkler_usd":
            "Mean Winkler (interval) score in USD of the last 60 scored forecasts (lower is better), by pair, interval, model version "
            + "and level.",
        "candlecast_naive_rolling_winkler_usd":
            "Mean Winkler score in USD of the naive baseline's intervals on the same days, by pair, interval, model version and level.",
        "candlecast_forecast_rolling_brier":
            "Mean Brier score of the up probability over the last 60 scored forecasts (0 is perfect, 0.25 a coin), by pair, interval "
            + "and model version.",
        "candlecast_naive_rolling_brier": "Mean Brier score of the naive baseline's up probability on the same days.",
        "candlecast_forecast_rmse_reference_usd":
            "Configured reference for the rolling RMSE; an alert fires above it (CANDLECAST_MONITOR_RMSE_REFERENCE_USD).",
        "candlecast_monitor_forecasts_received_total": "Forecast events the monitor stored, by pair, interval and model version.",
        "candlecast_last_forecast_timestamp_seconds": "Unix time the newest forecast was produced, by pair and interval.",
        "candlecast_champion_version": "Model version the champion alias points at, by model.",
        "candlecast_promotions_total": "Champion moves seen (gate promotions, manual promotions, rollbacks), by model.",
        "candlecast_training_runs_total": "Training runs completed, by result (succeeded or failed).",
        "candlecast_training_run_duration_seconds": "Training time of completed runs in seconds.",
        "candlecast_training_last_test_mase": "Test MASE of the most recent successful training run (below 1 beats naive).",
        "candlecast_training_epochs_total": "Training epochs reported by trainers.",
        "candlecast_candle_age_seconds": "Seconds since the newest closed candle closed, by pair and interval.",
        "candlecast_dead_letter_queue_messages": "Messages waiting in each service's dead-letter queue.",
    ]

    /// Adds a `# HELP` line before every `# TYPE` line of a Prometheus text exposition that has none.
    public static func annotate(_ exposition: String) -> String {
        var output = ""
        output.reserveCapacity(exposition.utf8.count + 4096)
        var previousLine: Substring = ""
        for line in exposition.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), !previousLine.hasPrefix("# HELP ") {
                let name = line.dropFirst("# TYPE ".count).prefix { $0 != " " }
                if let help = catalogue[String(name)] { output += "# HELP \(name) \(help)\n" }
            }
            output += line
            output += "\n"
            previousLine = line
        }
        // One newline too many was added after the last piece (empty when the text ended with a newline).
        output.removeLast()
        return output
    }
}
