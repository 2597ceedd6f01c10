import Contracts
import Dispatch
import Foundation

/// Trains a model on a close-price series: Adam on the head's loss (MSE for a point head, the Gaussian negative
/// log-likelihood for a gaussian one), seeded shuffled mini-batches, early stopping on the validation tail with the best
/// weights restored, learning-rate reduction on plateaus, optional clipping; then calibrates the intervals on the
/// validation tail (split conformal, `TrainedModel.calibrating`).
public struct Trainer: Sendable {
    public let model: ModelConfiguration
    public let training: TrainingConfiguration
    /// The spec the trained model carries; nil: read off `model` and the split's fractions.
    public let spec: ForecastSpec?

    public init(model: ModelConfiguration, training: TrainingConfiguration = TrainingConfiguration(), spec: ForecastSpec? = nil) {
        self.model = model
        self.training = training
        self.spec = spec
    }

    /// Trains on `closes` under `split` and returns the model with the best validation weights, calibrated on the
    /// split's validation rows: its forecasts carry intervals and an up probability.
    ///
    /// Calibration needs at least `ResidualCalibration.minimumRows` validation rows. With fewer, training is refused
    /// before the first epoch (`insufficientData`, the message says so) rather than returning a model that can give a
    /// point forecast but no interval: every served forecast carries intervals, so such a model could never be used, and
    /// the user learns it at once instead of after the training time.
    ///
    /// Runs synchronously on the calling thread (CPU-bound; call it from a detached task or a dedicated
    /// thread). Runs on a team of `training.blasThreads` threads (at most one per core; the caller's is one of them),
    /// each on single-threaded OpenBLAS (it sets OpenBLAS's process-wide thread count to 1).
    /// - Parameters:
    ///   - onEpoch: called after every epoch, on the training thread, for progress and metric events.
    ///   - shouldCancel: polled before every batch, like the current task's cancellation.
    /// - Throws: `ForecastingError.cancelled` on cancellation; `invalidConfiguration`/`invalidInput` on bad settings or data;
    ///   `insufficientData` when the validation rows are too few to calibrate.
    public func train(
        closes: [Double], split: ChronologicalSplit,
        onEpoch: (EpochReport) -> Void = { _ in }, shouldCancel: () -> Bool = { false }
    ) throws -> TrainedModel {
        // Adam's moments and late-training weights reach the subnormal range, which stalls x86 cores.
        let floatingPointMode = DenormalFlushing.enable()
        defer { DenormalFlushing.restore(floatingPointMode) }
        let layout = try NetworkLayout(model)
        try training.validate()
        guard split.count == closes.count, split.window == model.window else {
            throw ForecastingError.invalidInput(
                "split was made for \(split.count) closes and window \(split.window), got \(closes.count) closes and window \(model.window)"
            )
        }
        guard closes.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw ForecastingError.invalidInput("closes must be finite and positive")
        }
        let validationRows = split.validationTargets.count
        guard validationRows >= ResidualCalibration.minimumRows else {
            throw ForecastingError(
                .insufficientData,
                "calibrating the intervals needs at least \(ResidualCalibration.minimumRows) validation rows, the split has "
                    + "\(validationRows) (use more closes or a larger validation fraction)",
                needed: ResidualCalibration.minimumRows, available: validationRows)
        }
        let scaler = try MinMaxScaler(fittingOn: closes[0..<split.trainingEnd])
        let encodedFit = try EncodedSamples(
            closes: closes, targets: split.fitTargets, window: model.window, target: model.target, scaler: scaler)
        let encodedValidation = try EncodedSamples(
            closes: closes, targets: split.validationTargets, window: model.window, target: model.target, scaler: scaler)
        // A gaussian head learns standardised returns (r / the fit returns' deviation): daily returns are a few hundredths,
        // and Adam's steps, which do not scale with the target, would otherwise swing mu and s by more than the signal.
        // The last layer is rescaled to returns once training ends (`GaussianHead.unstandardise`); losses are reported
        // in returns (NLL(r) = NLL(r / scale) + log scale).
        let targetScale = model.head == .gaussian ? GaussianHead.standardDeviation(encodedFit.targets) : 1
        let fitSamples = encodedFit.dividingTargets(by: targetScale)
        let validationSamples = encodedValidation.dividingTargets(by: targetScale)
        let lossOffset = model.head == .gaussian ? log(targetScale) : 0

        // Model parallelism: every batch runs on a team of `blasThreads` members, each on its share of every layer's
        // units and on single-threaded BLAS (batch-32 GEMMs are too small for OpenBLAS's own threads to pay off).
        // Every value has one writer, so a seed and team size give the same bits. Members beyond the cores would only
        // spin at the barriers: the team is at most one member per core.
        let team = ComputeTeam(size: min(training.blasThreads, ProcessInfo.processInfo.activeProcessorCount))
        defer { team.shutdown() }
        BLASThreads.set(1)
        let started = ContinuousClock.now
        var generator = SeededGenerator(seed: training.seed)
        let parameters = FloatBuffer(layout.initialParameters(using: &generator))
        if model.head == .gaussian {
            initialiseGaussianHead(parameters, layout: layout, fitInputs: fitSamples.inputs)
        }
        let bestParameters = FloatBuffer(parameters.array)
        let gradients = FloatBuffer(count: layout.parameterCount)
        let optimizer = AdamOptimizer(
            parameterCount: layout.parameterCount, beta1: training.adamBeta1, beta2: training.adamBeta2,
            epsilon: training.adamEpsilon)
        let batchCapacity = training.batchSize
        let head = model.head
        let clipNorm = training.clipNorm
        let engine = NetworkEngine<Float>(layout: layout, batchCapacity: batchCapacity)
        let batchInputs = FloatBuffer(count: batchCapacity * model.window * model.featureCount)
        let outputGradient = FloatBuffer(count: batchCapacity * head.outputCount)
        let scratch = PassScratch(members: team.size)

        var learningRate = training.learningRate
        var order = Array(0..<fitSamples.count)
        var bestMonitored = Double.infinity
        var bestEpoch = 0
        var epochsWithoutImprovement = 0
        var plateauBest = Double.infinity
        var epochsOnPlateau = 0
        var epochsRun = 0

        for epoch in 1...training.epochs {
            let epochStarted = ContinuousClock.now
            generator.shuffle(&order)
            var lossSum = 0.0
            for batchStart in stride(from: 0, to: order.count, by: batchCapacity) {
                if Task.isCancelled || shouldCancel() { throw ForecastingError.cancelled }
                let batchSamples = order[batchStart..<min(batchStart + batchCapacity, order.count)]
                let stepSize = optimizer.nextStepSize(learningRate: learningRate)
                team.run { member in
                    let batch = batchSamples.count
                    if member.isLeader { fitSamples.gatherTimeMajor(batchSamples, into: batchInputs.pointer) }
                    member.synchronize()
                    let outputs = engine.forward(
                        parameters: parameters.pointer, inputs: batchInputs.pointer, batch: batch, member: member)
                    if member.isLeader {
                        scratch.lossSum = 0
                        let gradient = outputGradient.pointer
                        switch head {
                        case .point:
                            for (position, sample) in batchSamples.enumerated() {
                                let error = outputs[position] - fitSamples.targets[sample]
                                scratch.lossSum += Double(error * error)
                                // d(mean squared error over the batch)/d(output).
                                gradient[position] = 2 * error / Float(batch)
                            }
                        case .gaussian:
                            for (position, sample) in batchSamples.enumerated() {
                                let nll = GaussianHead.negativeLogLikelihood(
                                    actual: Double(fitSamples.targets[sample]), location: Double(outputs[2 * position]),
                                    logScale: Double(outputs[2 * position + 1]))
                                scratch.lossSum += nll.loss
                                // d(mean NLL over the batch)/d(mu, s).
                                gradient[2 * position] = Float(nll.locationGradient / Double(batch))
                                gradient[2 * position + 1] = Float(nll.logScaleGradient / Double(batch))
                            }
                        }
                    }
                    member.synchronize()
                    engine.backward(
                        parameters: parameters.pointer, inputs: batchInputs.pointer, batch: batch,
                        outputGradient: outputGradient.pointer, parameterGradients: gradients.pointer, member: member)
                    // Adam (and clipping) on this member's share of the parameters.
                    let owned = member.share(of: gradients.count)
                    if let clipNorm {
                        scratch.squares[member.index] = sumOfSquares(gradients, range: owned)
                        member.synchronize()
                        let norm = (0..<member.count).reduce(0.0) { $0 + scratch.squares[$1] }.squareRoot()
                        clip(gradients, range: owned, norm: norm, maximumNorm: clipNorm)
                    }
                    optimizer.update(parameters: parameters, gradients: gradients, stepSize: stepSize, range: owned)
                }
                lossSum += scratch.lossSum
            }
            epochsRun = epoch
            let loss = lossSum / Double(fitSamples.count) + lossOffset
            let validationLoss =
                validationSamples.count > 0
                ? meanLoss(
                    team: team, engine: engine, parameters: parameters, samples: validationSamples, inputs: batchInputs,
                    scratch: scratch) + lossOffset
                : nil
            let monitored = validationLoss ?? loss

            // Early stopping (Keras semantics: improvement means below best - minDelta).
            let isBest = monitored < bestMonitored - training.minDelta
            if isBest {
                bestMonitored = monitored
                bestEpoch = epoch
                bestParameters.copy(from: parameters)
                epochsWithoutImprovement = 0
            } else {
                epochsWithoutImprovement += 1
            }
            onEpoch(
                EpochReport(
                    epoch: epoch, loss: loss, validationLoss: validationLoss, learningRate: learningRate,
                    seconds: seconds(since: epochStarted), isBest: isBest))

            // Reduce-on-plateau (Keras semantics), applied from the next epoch.
            if monitored < plateauBest - training.reduceLRMinDelta {
                plateauBest = monitored
                epochsOnPlateau = 0
            } else {
                epochsOnPlateau += 1
                if epochsOnPlateau >= training.reduceLRPatience && learningRate > training.minLearningRate {
                    learningRate = max(learningRate * training.reduceLRFactor, training.minLearningRate)
                    epochsOnPlateau = 0
                }
            }
            if epochsWithoutImprovement >= training.patience || !monitored.isFinite { break }
        }

        let summary = TrainingSummary(
            training: training, epochsRun: epochsRun, bestEpoch: bestEpoch, bestMonitoredLoss: bestMonitored,
            finalLearningRate: learningRate, trainingSamples: fitSamples.count,
            validationSamples: validationSamples.count, trainingEnd: split.trainingEnd,
            trainSeconds: seconds(since: started))
        let trainedSpec =
            spec
            ?? ForecastSpec(
                window: model.window, target: model.target, activation: model.lstmActivation ?? .relu, split: split.fractions)
        if model.head == .gaussian { GaussianHead.unstandardise(bestParameters, layout: layout, scale: targetScale) }
        let trained = try TrainedModel(
            configuration: model, scaler: scaler, summary: summary, weights: bestParameters.array, spec: trainedSpec)
        return try trained.calibrating(closes: closes, targets: split.validationTargets)
    }

    /// The head's loss (mean squared error, or mean Gaussian negative log-likelihood) over `samples`: what early stopping
    /// and the plateau detector monitor.
    private func meanLoss(
        team: ComputeTeam, engine: NetworkEngine<Float>, parameters: FloatBuffer, samples: EncodedSamples,
        inputs: FloatBuffer, scratch: PassScratch
    ) -> Double {
        var lossSum = 0.0
        let indices = Array(0..<samples.count)
        let head = model.head
        for start in stride(from: 0, to: samples.count, by: engine.batchCapacity) {
            let chunk = indices[start..<min(start + engine.batchCapacity, samples.count)]
            team.run { member in
                if member.isLeader { samples.gatherTimeMajor(chunk, into: inputs.pointer) }
                member.synchronize()
                let outputs = engine.forward(parameters: parameters.pointer, inputs: inputs.pointer, batch: chunk.count, member: member)
                guard member.isLeader else { return }
                scratch.lossSum = 0
                for (position, sample) in chunk.enumerated() {
                    let actual = Double(samples.targets[sample])
                    switch head {
                    case .point:
                        let error = Double(outputs[position]) - actual
                        scratch.lossSum += error * error
                    case .gaussian:
                        scratch.lossSum +=
                            GaussianHead.negativeLogLikelihood(
                                actual: actual, location: Double(outputs[2 * position]), logScale: Double(outputs[2 * position + 1])
                            ).loss
                    }
                }
            }
            lossSum += scratch.lossSum
        }
        return lossSum / Double(samples.count)
    }

    /// Starts the gaussian head at location 0 and sigma 1 (in standardised returns: the fit returns' deviation) through
    /// the output layer's biases, so the first epochs learn the volatility's changes instead of sigma's level.
    ///
    /// And divides the first LSTM layer's input kernel by the inputs' root mean square: log-prices relative to the last
    /// close are a few hundredths, so with Keras's initialisation every gate sits in its linear range and sigma cannot
    /// tell a calm window from a volatile one (that takes |x|-like nonlinearity). Scaled, the first pre-activations are of
    /// order one, as for min-max scaled inputs. The scale lives in the weights: the model file needs nothing new.
    private func initialiseGaussianHead(_ parameters: FloatBuffer, layout: NetworkLayout, fitInputs inputs: [Float]) {
        guard let output = layout.denseLayers.last, let input = layout.recurrentLayers.first, !inputs.isEmpty else { return }
        parameters.pointer[output.biasOffset] = 0
        parameters.pointer[output.biasOffset + 1] = 0
        let rootMeanSquare = (inputs.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(inputs.count)).squareRoot()
        guard rootMeanSquare > 0, rootMeanSquare < 1 else { return }
        let kernel = parameters.pointer + input.kernelOffset
        for index in 0..<(input.inputSize * input.gateWidth) { kernel[index] = Float(Double(kernel[index]) / rootMeanSquare) }
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
}

/// What a pass's members hand back to the training loop: the leader's loss sum and each member's share of the
/// squared gradient norm. `@unchecked Sendable`: each field has one writer per pass, read after `ComputeTeam.run`
/// returns (or after a barrier).
private final class PassScratch: @unchecked Sendable {
    var lossSum = 0.0
    /// One slot per member (a raw buffer: members write their slots at the same time).
    let squares: UnsafeMutablePointer<Double>

    init(members: Int) {
        squares = .allocate(capacity: members)
        squares.initialize(repeating: 0, count: members)
    }

    deinit { squares.deallocate() }
}
