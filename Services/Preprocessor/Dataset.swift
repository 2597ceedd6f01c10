import Contracts
import Forecasting
import Foundation

/// One stored candle as the preprocessor sees it through `ingest.candles_v1`.
struct SeriesRow: Sendable, Equatable {
    var openTime: Int64
    /// Exact decimal text, as stored.
    var closeText: String
    var revision: Int
    /// Exact decimal text; read only when the feature set includes volume.
    var volumeText: String? = nil
    var close: Double { Double(closeText) ?? .nan }
}

/// How datasets are cut. BTC-daily-v1 by default.
struct DatasetPolicy: Sendable, Equatable {
    /// Stored with every version cut under this policy; its split is applied here once (`training_end`).
    var spec = ForecastSpec()
    /// How many recent closes a `features.window` carries at most: enough for a model of any window a spec allows.
    static let windowCloses = ForecastSpec.windows.upperBound

    var window: Int {
        get { spec.window }
        set { spec.window = newValue }
    }
    var trainFraction: Double {
        get { spec.split.train }
        set { spec.split.train = newValue }
    }
    var validationFraction: Double {
        get { spec.split.validation }
        set { spec.split.validation = newValue }
    }
    /// The feature set: the close always; `volume` optionally (CANDLECAST_FEATURES=close,volume). The model
    /// trains on closes; volumes travel in the windows and dataset versions for models that use them.
    var includesVolume: Bool {
        get { spec.features.includesVolume }
        set { spec.features = newValue ? .closeVolume : .close }
    }
    var feature: String { spec.features.rawValue }
    /// A new version after this many new candles.
    var newVersionEvery = 30
    /// No version (and so no window) before the series has this many rows.
    var minimumRows = 100
}

/// A dataset version before it is stored: rows, split and the scaler fitted on the training rows only.
struct DatasetSnapshot: Sendable, Equatable {
    var rows: [SeriesRow]
    var split: ChronologicalSplit
    var scaler: MinMaxScaler
    var contentHash: String

    init(rows: [SeriesRow], policy: DatasetPolicy) throws {
        self.rows = rows
        split = try ChronologicalSplit(count: rows.count, spec: policy.spec)
        // Fitted on the training rows only: nothing from the validation tail's future or the test period leaks in.
        scaler = try MinMaxScaler(fittingOn: rows[0..<split.trainingEnd].map(\.close))
        contentHash = Self.hash(rows)
    }

    /// FNV-1a 64 over `open_time,close[,volume]\n` lines: the same rows always give the same hash.
    static func hash(_ rows: [SeriesRow]) -> String {
        var hash = FNV1a64()
        for row in rows { hash.combine("\(row.openTime),\(row.closeText)\(row.volumeText.map { "," + $0 } ?? "")\n".utf8) }
        return hash.hexDigits
    }

    func readyEvent(pair: String, interval: CandleInterval, version: Int, policy: DatasetPolicy) -> DatasetReady {
        DatasetReady(
            pair: pair, interval: interval, version: version, rowCount: rows.count, firstOpenTime: rows.first?.openTime ?? 0,
            lastOpenTime: rows.last?.openTime ?? 0, contentHash: contentHash, window: policy.window, feature: policy.feature,
            trainingEnd: split.trainingEnd, validationFraction: policy.validationFraction,
            scaler: ScalerBounds(minimum: scaler.minimum, maximum: scaler.maximum), spec: policy.spec)
    }
}

enum WindowBuilder {
    /// The window ending at the newest of `rows` (the most recent rows up to the candle, oldest first, at most
    /// `DatasetPolicy.windowCloses`), scaled with `scaler`. Nil when fewer than `windowLength` rows (the policy's
    /// window) are stored yet.
    static func window(
        rows: [SeriesRow], pair: String, interval: CandleInterval, windowLength: Int, datasetVersion: Int, scaler: MinMaxScaler
    ) -> FeatureWindow? {
        guard rows.count >= windowLength, rows.count <= DatasetPolicy.windowCloses, let first = rows.first, let last = rows.last else {
            return nil
        }
        let closes = rows.map(\.close)
        let spannedIntervals = Int((last.openTime - first.openTime) / interval.seconds) + 1
        var window = FeatureWindow(
            pair: pair, interval: interval, windowEndOpenTime: last.openTime, targetOpenTime: last.openTime + interval.seconds,
            datasetVersion: datasetVersion, closes: closes, scaledCloses: scaler.transform(closes),
            scaler: ScalerBounds(minimum: scaler.minimum, maximum: scaler.maximum), gapIntervals: spannedIntervals - rows.count,
            revision: last.revision)
        if rows.allSatisfy({ $0.volumeText != nil }) { window.volumes = rows.compactMap { $0.volumeText.flatMap(Double.init) } }
        return window
    }
}
