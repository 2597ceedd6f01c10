// `Activation`, `ForecastTarget` and `ForecastSpec` are the contract's own types: one enum each for messages and
// the network. Re-exported so that users of the network need not know where they live.
@_exported import Contracts

/// One layer of a model. LSTM layers come first (each feeds its whole sequence to the next; the last
/// hands its final hidden state on), then dense layers; the last dense layer is the head's output
/// (`OutputHead.outputCount` units).
public enum LayerSpec: Codable, Sendable, Equatable {
    case lstm(units: Int, activation: Activation)
    case dense(units: Int, activation: Activation = .linear)
}

/// The architecture and data shape of a model; stored in the model file.
public struct ModelConfiguration: Codable, Sendable, Equatable {
    /// Layers in order, input to output.
    public var layers: [LayerSpec]
    /// Number of past closes each forecast sees.
    public var window: Int
    /// The quantity the network is trained to output.
    public var target: ForecastTarget
    /// Values per time step. The close-price pipeline feeds one (the scaled close).
    public var featureCount: Int
    /// What the last layer outputs. Absent from model files written before heads existed: `.point`.
    public var head: OutputHead

    public init(layers: [LayerSpec], window: Int, target: ForecastTarget, featureCount: Int = 1, head: OutputHead = .point) {
        self.layers = layers
        self.window = window
        self.target = target
        self.featureCount = featureCount
        self.head = head
    }

    /// `layers` LSTM layers of `units` with the spec's activation, then the head's dense output layer, over the spec's
    /// window and target (a `.gaussian` head needs the spec's target to be `.logReturn`: `validate()` says so).
    public init(spec: ForecastSpec, units: Int, layers: Int, head: OutputHead = .point) {
        self.init(
            layers: Array(repeating: .lstm(units: units, activation: spec.activation), count: layers) + [.dense(units: head.outputCount)],
            window: spec.window, target: spec.target, head: head)
    }

    enum CodingKeys: String, CodingKey {
        case layers, window, target, featureCount, head
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        layers = try container.decode([LayerSpec].self, forKey: .layers)
        window = try container.decode(Int.self, forKey: .window)
        target = try container.decode(ForecastTarget.self, forKey: .target)
        featureCount = try container.decode(Int.self, forKey: .featureCount)
        head = try container.decodeIfPresent(OutputHead.self, forKey: .head) ?? .point
    }

    /// The activation of the first LSTM layer (the one a spec names).
    public var lstmActivation: Activation? {
        for case .lstm(_, let activation) in layers { return activation }
        return nil
    }

    /// The BTC-daily-v1 reference architecture: window 14, LSTM(units, relu) -> Dense(1).
    public static func btcDailyV1(
        units: Int = 350, activation: Activation = .relu, target: ForecastTarget = .nextScaledClose
    ) -> ModelConfiguration {
        ModelConfiguration(layers: [.lstm(units: units, activation: activation), .dense(units: 1)], window: 14, target: target)
    }

    /// Throws `ForecastingError.invalidConfiguration` unless the layers form LSTM+ then Dense+ ending in the head's
    /// `outputCount` linear units, and a `.gaussian` head's target is `.logReturn`.
    public func validate() throws {
        // Upper bounds too: a model file from outside must not make the layout arithmetic overflow.
        guard (1...4096).contains(window) else { throw ForecastingError.invalidConfiguration("window must be 1 to 4096, got \(window)") }
        guard (1...16).contains(layers.count) else { throw ForecastingError.invalidConfiguration("1 to 16 layers, got \(layers.count)") }
        guard featureCount == 1 else {
            throw ForecastingError.invalidConfiguration("featureCount must be 1 (the inputs are closes), got \(featureCount)")
        }
        var seenDense = false
        var lstmCount = 0
        for (index, layer) in layers.enumerated() {
            switch layer {
            case .lstm(let units, _):
                guard !seenDense else {
                    throw ForecastingError.invalidConfiguration("layer \(index): LSTM layers must come before dense layers")
                }
                guard (1...4096).contains(units) else {
                    throw ForecastingError.invalidConfiguration("layer \(index): units must be 1 to 4096")
                }
                lstmCount += 1
            case .dense(let units, _):
                guard (1...4096).contains(units) else {
                    throw ForecastingError.invalidConfiguration("layer \(index): units must be 1 to 4096")
                }
                seenDense = true
            }
        }
        guard lstmCount >= 1 else { throw ForecastingError.invalidConfiguration("at least one LSTM layer is required") }
        switch head {
        case .point:
            guard case .dense(1, _) = layers.last else {
                throw ForecastingError.invalidConfiguration("the last layer must be a dense layer with 1 unit (the forecast)")
            }
        case .gaussian:
            // A squashing activation would bound the location and the log-scale: the head is linear by definition.
            guard case .dense(2, .linear) = layers.last else {
                throw ForecastingError.invalidConfiguration(
                    "a gaussian head's last layer must be a linear dense layer with 2 units (location, log-scale)")
            }
            guard target == .logReturn else {
                throw ForecastingError.invalidConfiguration(
                    "a gaussian head models the next log-return: the target must be log-return, got \(target.rawValue)")
            }
        }
    }
}

extension OutputHead {
    /// Units of the last dense layer: the forecast, or the location and log-scale.
    public var outputCount: Int {
        switch self {
        case .point: 1
        case .gaussian: 2
        }
    }
}
