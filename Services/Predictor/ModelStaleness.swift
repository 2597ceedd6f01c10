import Contracts
import Storage

/// What `stale` means on a forecast: the model has not seen the market for longer than the limit. Measured in
/// data time, from the newest candle of the dataset version the model was trained on to the newest candle of
/// the window it forecasts from; never from a wall clock. So a forecast's flag depends only on stored data:
/// the same after a promotion, after a restart (which reloads the champion) and in a replay, where wall-clock
/// ages mean nothing. (A model version's creation time would restart the clock at every retraining on old
/// data, and differs between loading after a promotion and after a restart.)
enum ModelStaleness {
    /// True when the window's newest candle is more than `maximumAge` after the model's newest training candle,
    /// or when that candle is unknown (a model whose data cannot be found cannot be vouched for).
    static func isStale(trainedThrough: Int64?, windowEndOpenTime: Int64, maximumAge: Duration) -> Bool {
        guard let trainedThrough else { return true }
        return windowEndOpenTime - trainedThrough > maximumAge.components.seconds
    }

    /// The open time of the newest candle of a dataset version (the preprocessor's read contract,
    /// `features.dataset_versions_v1`); nil when there is no such version.
    static func lastOpenTime(pair: String, interval: CandleInterval, datasetVersion: Int, on connection: PostgresConnection) throws
        -> Int64?
    {
        try connection.query(
            """
            SELECT last_open_time FROM features.dataset_versions_v1
            WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND version = \(datasetVersion)
            """
        ).first?.decode(0, as: Int64.self)
    }
}
