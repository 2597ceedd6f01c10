import Foundation
import Messaging
import Testing

@Suite("Message envelope")
struct EnvelopeTests {
    struct Price: MessagePayload {
        static let messageType = "test.price"
        static let schemaVersion = 2
        var pair: String
        var close: Double
        func validate() throws(ValidationFailure) {
            guard close.isFinite, close > 0 else { throw ValidationFailure("close must be a positive finite number, got \(close)") }
        }
    }

    @Test("an envelope carries the contract's AMQP properties and round-trips")
    func roundTrip() throws {
        let id = UUID()
        let envelope = Envelope(payload: Price(pair: "XBTUSD", close: 93429.2), messageID: id, correlationID: "flow-1")
        let message = try EnvelopeCodec.encode(envelope, exchange: "candlecast.events", routingKey: "test.price.xbtusd")
        #expect(message.properties.contentType == "application/json")
        #expect(message.properties.deliveryMode == 2)
        #expect(message.properties.type == "test.price")
        #expect(message.properties.messageID == id.uuidString.lowercased())
        #expect(message.properties.correlationID == "flow-1")
        #expect(message.properties.headers["schema_version"] == .int(2))
        #expect(message.properties.timestamp != nil)
        #expect(String(decoding: message.body, as: UTF8.self) == #"{"close":93429.2,"pair":"XBTUSD"}"#)

        let decoded = try EnvelopeCodec.decode(Price.self, from: message.body, properties: message.properties)
        #expect(decoded.messageID == id)
        #expect(decoded.payload.pair == "XBTUSD")
        #expect(decoded.payload.close == 93429.2)
    }

    @Test("wrong type, wrong version, malformed and invalid bodies each fail with a reason")
    func decodingFailures() throws {
        let good = try EnvelopeCodec.encode(Envelope(payload: Price(pair: "XBTUSD", close: 1)), exchange: "x", routingKey: "y")
        func failure(_ mutate: (inout OutgoingMessage) -> Void) -> String? {
            var message = good
            mutate(&message)
            do {
                _ = try EnvelopeCodec.decode(Price.self, from: message.body, properties: message.properties)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(failure { $0.properties.type = nil } == "message type missing is not test.price")
        #expect(failure { $0.properties.headers = [:] } == "schema version missing is not supported (expected 2)")
        #expect(failure { $0.properties.headers["schema_version"] = .int(3) } == "schema version 3 is not supported (expected 2)")
        #expect(failure { $0.properties.contentType = "text/plain" } == "content type text/plain is not application/json")
        #expect(failure { $0.body = Array(#"{"pair":"XBTUSD"}"#.utf8) } == "malformed JSON body: missing field close")
        #expect(
            failure { $0.body = Array(#"{"pair":"XBTUSD","close":"12"}"#.utf8) }?.hasPrefix("malformed JSON body: wrong type at close")
                == true)
        #expect(
            failure { $0.body = Array(#"{"pair":"XBTUSD","close":-5}"#.utf8) }
                == "invalid payload: close must be a positive finite number, got -5.0")
        #expect(failure { $0.body = [0xFF, 0xFE] }?.hasPrefix("malformed JSON body") == true)
        #expect(failure { $0.body = Array(repeating: UInt8(ascii: "["), count: 100_000) }?.hasPrefix("malformed JSON body") == true)
        #expect(failure { _ in } == nil)
    }

    @Test("AMQP URLs are parsed and never logged with their password")
    func brokerURL() throws {
        let configuration = try BrokerConfiguration(url: "amqp://svc:secret@rabbit.internal:5673/prod", heartbeatSeconds: 10)
        #expect(configuration.host == "rabbit.internal")
        #expect(configuration.port == 5673)
        #expect(configuration.virtualHost == "prod")
        #expect(configuration.user == "svc")
        #expect(configuration.password == "secret")
        #expect(try BrokerConfiguration(url: "amqp://svc@h/", password: "fromfile").password == "fromfile")
        #expect(try BrokerConfiguration(url: "amqp://svc@h/", password: "p").virtualHost == "/")
        #expect(BrokerConfiguration.redacted("amqp://svc:secret@h/") == "amqp://svc:****@h/")
        // A combining mark after `:` makes one Character of the two; the URL parser still sees the separator.
        let combining = "amqp://svc:\u{65E}secret@h/"
        #expect(!BrokerConfiguration.redacted(combining).contains("secret"))
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: combining) }
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "amqp://svc@h/\u{7F}", password: "p") }
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "http://h/", password: "p") }
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "amqp://h/", password: "p") }
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "amqp://svc@h/") }
    }

    @Test("a cluster's nodes are listed in one URL, as libpq lists hosts; amqps needs its CA, and TLS settings need amqps")
    func severalNodesAndTLS() throws {
        let cluster = try BrokerConfiguration(url: "amqp://svc@node1:5672,node2,[::1]:5674/prod", password: "p")
        #expect(
            cluster.endpoints == [
                .init(host: "node1", port: 5672), .init(host: "node2", port: 5672), .init(host: "::1", port: 5674),
            ])
        #expect(cluster.virtualHost == "prod" && cluster.user == "svc" && cluster.tls == nil)
        let tls = BrokerConfiguration.TLS(caFile: "/etc/ca.pem")
        let secure = try BrokerConfiguration(url: "amqps://svc:secret@rabbit-1,rabbit-2:5999/", tls: tls)
        #expect(secure.endpoints.map(\.port) == [5671, 5999])
        #expect(secure.password == "secret" && secure.tls == tls)
        #expect(BrokerConfiguration.redacted("amqps://svc:secret@a,b/") == "amqps://svc:****@a,b/")
        for bad in [
            "amqp://svc@a,,b/", "amqp://svc@a:0/", "amqp://svc@a:65536/", "amqp://svc@a:99999999999999999999/", "amqp://svc@a:x/",
            "amqp://svc@[::1/", "amqp://svc@/", "amqp://svc@a b/", "amqp://svc@h1,::1/", "amqp://svc@h1,h2:5672:5673/",
            "amqp://svc@h1,bröker/", "amqp://svc@h1,h2:+5672/", "amqp://svc@h1,[::1]x/",
            "amqp://svc@" + Array(repeating: "h", count: 17).joined(separator: ",") + "/",
        ] {
            #expect(throws: BrokerError.self, "\(bad)") { try BrokerConfiguration(url: bad, password: "p") }
        }
        // Percent-encoding is decoded once: `%2540` is the three characters `%40`, not `@`.
        let encoded = try BrokerConfiguration(url: "amqp://a%2540b@h/v%2Fhost", password: "p")
        #expect(encoded.user == "a%40b" && encoded.virtualHost == "v/host")
        #expect(try BrokerConfiguration(url: "amqp://svc@h1,[fe80::1%25eth0]:5673/", password: "p").endpoints[1].host == "fe80::1%eth0")
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "amqps://svc@h/", password: "p") }
        #expect(throws: BrokerError.self) { try BrokerConfiguration(url: "amqp://svc@h/", password: "p", tls: tls) }
    }
}
