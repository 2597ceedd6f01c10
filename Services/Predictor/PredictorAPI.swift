import Contracts
import Foundation
import Hummingbird
import ServiceKit
import Storage

/// The predictor's HTTP API (docs/predictor-openapi.yaml).
struct PredictorAPI: Sendable {
    let predictor: Predictor

    func add(to router: Router<BasicRequestContext>) {
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
            let from = try request.integerQuery("from", as: Int64.self) ?? 0
            let to = try request.integerQuery("to", as: Int64.self) ?? Int64.max
            let limit = min(try request.integerQuery("limit") ?? 1000, 10_000)
            guard from <= to, limit > 0 else { throw HTTPError(.badRequest, message: "need from <= to and limit > 0") }
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
            guard let interval = CandleInterval(body.interval ?? "1d") else { throw HTTPError(.badRequest, message: "unknown interval") }
            let pair = (body.pair ?? "XBTUSD").uppercased()
            guard isValidPairName(pair) else {
                throw HTTPError(.badRequest, message: "pair must be 1 to 32 letters and digits")
            }
            // The input is checked before any model is looked up: a bad request is a 400 whether or not a champion exists.
            guard (2...512).contains(body.closes.count) else { throw HTTPError(.badRequest, message: "closes must hold 2 to 512 values, oldest first") }
            guard body.closes.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw HTTPError(.badRequest, message: "closes must be positive finite numbers") }
            guard let loaded = try await predictor.model(pair: pair, interval: interval) else {
                throw HTTPError(.serviceUnavailable, message: "no champion model for \(pair) \(interval) yet")
            }
            let window = loaded.model.configuration.window
            guard body.closes.count == window else { throw HTTPError(.badRequest, message: "closes must hold exactly \(window) values, oldest first") }
            let predicted = try loaded.model.predict(window: body.closes)
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
        let pair = (request.uri.queryParameters.get("pair") ?? "XBTUSD").uppercased()
        guard pair.count <= 32, pair.allSatisfy({ $0.isLetter || $0.isNumber }) else { throw HTTPError(.badRequest, message: "pair must be letters and digits") }
        guard let interval = CandleInterval(request.uri.queryParameters.get("interval") ?? "1d") else {
            throw HTTPError(.badRequest, message: "interval must be one of 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w, 15d")
        }
        return (pair, interval)
    }
}
