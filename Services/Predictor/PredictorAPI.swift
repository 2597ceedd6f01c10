import Contracts
import Foundation
import Hummingbird
import ServiceKit
import Storage

/// The predictor's HTTP API (docs/predictor-openapi.yaml).
struct PredictorAPI: Sendable {
    let predictor: Predictor

    func add(to router: Router<BasicRequestContext>) {
        let router = DeclaredRoutes(router)
        // Served from memory: the hot path of every dashboard and client.
        router.get("v1/forecasts/latest") { request, _ in
            let (pair, interval) = try target(request)
            guard let body = predictor.latest.body(pair: pair, interval: interval.name) else {
                throw HTTPError(.notFound, message: "no forecast yet for \(pair) \(interval)")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        router.get("v1/forecasts") { request, _ in
            let (pair, interval) = try target(request)
            let from = try request.integerQuery("from", as: Int64.self, in: ContractRules.openTimes) ?? ContractRules.openTimes.lowerBound
            let to = try request.integerQuery("to", as: Int64.self, in: ContractRules.openTimes) ?? ContractRules.openTimes.upperBound
            let limit = try request.integerQuery("limit", in: 1...10_000) ?? 1000
            guard from <= to else { throw HTTPError(.badRequest, message: "need from <= to") }
            let rows = try await predictor.database.query(
                """
                SELECT coalesce(json_agg(f ORDER BY f.target_open_time, f.model_version), '[]') FROM (
                    SELECT pair, interval_seconds, target_open_time, model_name, model_version, dataset_version, predicted_close, last_close, stale,
                           produced_at, actual_close, error, absolute_error, percentage_error, naive_absolute_error, scored_at
                    FROM predictions.forecasts WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds))
                        AND target_open_time BETWEEN \(from) AND \(to)
                    ORDER BY target_open_time DESC LIMIT \(limit)) f
                """)
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: try rows[0].decode(0, as: String.self))))
        }
        router.post("v1/predict") { request, context in
            let body: PredictRequest
            do {
                let buffer = try await request.body.collect(upTo: 256 * 1024)
                body = try JSONDecoder().decode(PredictRequest.self, from: Data(buffer.readableBytesView))
            } catch let error as DecodingError {
                throw HTTPError(.badRequest, message: "invalid JSON body: \(error)")
            } catch {
                throw HTTPError(.contentTooLarge, message: "the body is larger than 256 KiB")
            }
            let interval = try HTTPInput.interval(body.interval ?? "1d")
            let pair = try HTTPInput.pair(body.pair ?? "XBTUSD")
            // The input is checked before any model is looked up: a bad request is a 400 whether or not a champion exists.
            guard (2...512).contains(body.closes.count) else { throw HTTPError(.badRequest, message: "closes must hold 2 to 512 values, oldest first") }
            guard body.closes.allSatisfy({ $0.isFinite && $0 > 0 && $0 <= ContractRules.maximumAmount }) else {
                throw HTTPError(.badRequest, message: "closes must be positive finite numbers up to \(ContractRules.maximumAmount)")
            }
            guard let loaded = try await predictor.model(pair: pair, interval: interval) else {
                throw HTTPError(.notFound, message: "no champion model for \(pair) \(interval) yet")
            }
            // Well-formed, but the champion in place now takes another window (a promotion can change it).
            let window = loaded.model.configuration.window
            guard body.closes.count == window else {
                throw HTTPError(.conflict, message: "the champion (v\(loaded.version)) takes exactly \(window) closes, oldest first; see GET /v1/model")
            }
            let predicted = try loaded.model.predict(window: body.closes)
            guard predicted.isFinite else {
                throw HTTPError(.conflict, message: "the champion (v\(loaded.version)) gives no finite forecast for these closes")
            }
            return HealthRoutes.jsonResponse(.ok, [
                "pair": pair, "interval": interval.name, "predicted_close": predicted, "last_close": body.closes[window - 1],
                "model_name": loaded.name, "model_version": loaded.version,
            ])
        }
        router.get("v1/model") { request, _ in
            let (pair, interval) = try target(request)
            guard let loaded = try await predictor.model(pair: pair, interval: interval) else {
                throw HTTPError(.notFound, message: "no champion model for \(pair) \(interval) yet")
            }
            let summary = loaded.model.summary
            return HealthRoutes.jsonResponse(.ok, [
                "model_name": loaded.name, "model_version": loaded.version, "window": loaded.model.configuration.window,
                "target": loaded.model.configuration.target.rawValue, "epochs_run": summary.epochsRun,
                "created_at": loaded.createdAt.formatted(.iso8601),
            ])
        }
    }

    struct PredictRequest: Decodable {
        var pair: String?
        var interval: String?
        var closes: [Double]
    }

    private func target(_ request: Request) throws -> (String, CandleInterval) {
        (try request.pairQuery(), try request.intervalQuery())
    }
}
