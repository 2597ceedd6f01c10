import Messaging

/// One message type of the contract: who publishes it, under which routing key, at which schema version.
public struct MessageKind: Sendable, Equatable {
    public let type: String
    public let schemaVersion: Int
    public let producer: ServiceName
    /// The routing key, with `<pair>` (lower-case, e.g. `xbtusd`), `<interval>` (`1d`) or `<name>` placeholders.
    public let routingKey: String
    public let summary: String

    init<Payload: MessagePayload>(_ payload: Payload.Type, producer: ServiceName, routingKey: String, summary: String) {
        type = Payload.messageType
        schemaVersion = Payload.schemaVersion
        self.producer = producer
        self.routingKey = routingKey
        self.summary = summary
    }
}

/// Every message type on `candlecast.events`: the single list the monitor counts by, docs/asyncapi.yaml
/// describes (a test keeps the two in step), and a subscriber in another language reads.
public enum MessageCatalog {
    public static let all: [MessageKind] = [
        MessageKind(
            CandleClosed.self, producer: .ingestor, routingKey: "candle.closed.<pair>.<interval>",
            summary: "A candle closed (or was revised) and is stored; prices are Kraken's decimal strings."),
        MessageKind(
            CandlesBackfilled.self, producer: .ingestor, routingKey: "candle.backfilled.<pair>.<interval>",
            summary: "A batch of historical candles was stored."),
        MessageKind(
            FeatureWindow.self, producer: .preprocessor, routingKey: "features.window.<pair>.<interval>",
            summary: "The newest window of closes, raw and scaled, ready to forecast the next close."),
        MessageKind(
            DatasetReady.self, producer: .preprocessor, routingKey: "dataset.ready.<pair>.<interval>",
            summary: "An immutable dataset version (rows, split, scaler) was created."),
        MessageKind(
            TrainingJob.self, producer: .registry, routingKey: RoutingKey.trainingJob,
            summary: "One grid point of a sweep, for one trainer replica."),
        MessageKind(
            TrainingCompleted.self, producer: .trainer, routingKey: RoutingKey.trainingCompleted,
            summary: "A training job ended: test metrics next to the naive forecast's, or the error."),
        MessageKind(
            TrainingEpochMetric.self, producer: .trainer, routingKey: "metric.trainer.epoch",
            summary: "One epoch of a training job: loss, validation loss, learning rate."),
        MessageKind(
            ModelPromoted.self, producer: .registry, routingKey: "model.promoted.<name>",
            summary: "An alias (champion) moved to a model version, by the gate, a promotion or a rollback."),
        MessageKind(
            ForecastCreated.self, producer: .predictor, routingKey: "forecast.created.<pair>.<interval>",
            summary: "The forecast close of the next candle, in USD, with the model that made it."),
        MessageKind(
            ForecastScored.self, producer: .predictor, routingKey: "metric.predictor.forecast_scored",
            summary: "A forecast met its actual candle: its error next to the naive forecast's."),
    ]

    /// The service that publishes messages of `type`, or nil for a type outside the contract.
    public static func producer(ofType type: String) -> ServiceName? {
        all.first { $0.type == type }?.producer
    }
}
