import Contracts
import Foundation
import Logging
import Messaging
import Storage

/// Why a service cannot start with the configuration it was given: `code` for programs, `key` naming the
/// variable, `reason` for people.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// A required variable is unset (or names nothing).
        public static let missing = Code(name: "missing")
        /// The value cannot be read as what the variable holds (not an integer, not a URL, not a pair).
        public static let invalidValue = Code(name: "invalidValue")
        /// A number outside the range the variable allows.
        public static let outOfRange = Code(name: "outOfRange")
        /// The file a `KEY_FILE` variable names cannot be read.
        public static let unreadableFile = Code(name: "unreadableFile")
    }

    public let code: Code
    public let key: String
    public let reason: String

    public init(_ code: Code, key: String, reason: String) {
        self.code = code
        self.key = key
        self.reason = reason
    }

    public init(key: String, reason: String) { self.init(.invalidValue, key: key, reason: reason) }

    public var description: String { "configuration \(key): \(reason)" }
}

/// Reads settings from environment variables. A secret `KEY` may instead come from the file named by
/// `KEY_FILE` (Docker and compose secrets), so that passwords never sit in the environment or the repository.
public struct EnvironmentReader: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public func string(_ key: String, default defaultValue: String) -> String {
        values[key].flatMap { $0.isEmpty ? nil : $0 } ?? defaultValue
    }

    /// The integer `KEY` (or `defaultValue`), which must lie in `range`.
    public func int(_ key: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text = values[key], !text.isEmpty else { return defaultValue }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigurationError(key: key, reason: "\(text.debugDescription) is not an integer")
        }
        guard range.contains(value) else {
            throw ConfigurationError(.outOfRange, key: key, reason: "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// The finite number `KEY` (or `defaultValue`), which must lie in `range`.
    public func double(_ key: String, default defaultValue: Double, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double {
        guard let text = values[key], !text.isEmpty else { return defaultValue }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw ConfigurationError(key: key, reason: "\(text.debugDescription) is not a finite number")
        }
        guard range.contains(value) else {
            throw ConfigurationError(.outOfRange, key: key, reason: "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A duration in seconds (`KEY`, a finite number in `range`) as a `Duration`.
    public func seconds(_ key: String, default defaultValue: Double, in range: ClosedRange<Double>) throws(ConfigurationError) -> Duration {
        .milliseconds(Int64((try double(key, default: defaultValue, in: range) * 1000).rounded()))
    }

    /// `KEY`, else the trimmed contents of the file at `KEY_FILE`, else nil.
    public func secret(_ key: String) throws(ConfigurationError) -> String? {
        if let value = values[key], !value.isEmpty { return value }
        guard let path = values[key + "_FILE"], !path.isEmpty else { return nil }
        guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError(.unreadableFile, key: key + "_FILE", reason: "cannot read \(path)")
        }
        return contents.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// What every Candlecast service reads at start. Each key, its default and its meaning:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CANDLECAST_AMQP_URL` | `amqp://candlecast@127.0.0.1:5672/` | broker URL (no password in it) |
/// | `CANDLECAST_AMQP_PASSWORD` / `_FILE` | required | broker password |
/// | `CANDLECAST_AMQP_HEARTBEAT` | `30` | heartbeat seconds |
/// | `CANDLECAST_AMQP_CA_FILE` | none | for an `amqps://` URL: PEM certificate authorities the broker's certificate must chain to |
/// | `CANDLECAST_AMQP_CERT_FILE`, `CANDLECAST_AMQP_KEY_FILE` | none | a client certificate and key, if the broker asks for one |
/// | `CANDLECAST_DATABASE_URL` | `postgresql://candlecast@127.0.0.1:5432/candlecast` | libpq URI |
/// | `CANDLECAST_DATABASE_PASSWORD` / `_FILE` | required | database password |
/// | `CANDLECAST_DATABASE_CONNECTIONS` | `2` | connections in the pool |
/// | `CANDLECAST_HTTP_HOST` | `127.0.0.1` | health/API listen address |
/// | `CANDLECAST_HTTP_PORT` | per service (8081...8086); `0` picks a free port | health/API port |
/// | `CANDLECAST_LOG_LEVEL` | `info` | trace, debug, info, notice, warning, error, critical |
/// | `CANDLECAST_LOG_FORMAT` | `json` | `json` (one object a line) or `text` |
/// | `CANDLECAST_MAX_DELIVERY_ATTEMPTS` | `5` | failures of one message's handler before it is dead-lettered (1-19) |
public struct ServiceConfiguration: Sendable {
    public var broker: BrokerConfiguration
    public var database: DatabaseConfiguration
    public var databaseConnections: Int
    public var httpHost: String
    public var httpPort: Int
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    public var maximumDeliveryAttempts: Int
    public var environment: EnvironmentReader

    public enum LogFormat: String, Sendable { case json, text }

    /// The broker settings alone (URL, password, heartbeat, TLS files), for a program that needs no database (the
    /// CLI's `queues migrate`).
    public static func broker(service: String, environment: EnvironmentReader = EnvironmentReader()) throws -> BrokerConfiguration {
        let amqpURL = environment.string("CANDLECAST_AMQP_URL", default: "amqp://candlecast@127.0.0.1:5672/")
        guard let amqpPassword = try environment.secret("CANDLECAST_AMQP_PASSWORD") else {
            throw ConfigurationError(.missing, key: "CANDLECAST_AMQP_PASSWORD", reason: "required: set it or CANDLECAST_AMQP_PASSWORD_FILE")
        }
        let heartbeat = try environment.int("CANDLECAST_AMQP_HEARTBEAT", default: 30, in: 0...3600)
        let caFile = environment.string("CANDLECAST_AMQP_CA_FILE", default: "")
        let certificateFile = environment.string("CANDLECAST_AMQP_CERT_FILE", default: "")
        let keyFile = environment.string("CANDLECAST_AMQP_KEY_FILE", default: "")
        guard certificateFile.isEmpty == keyFile.isEmpty else {
            throw ConfigurationError(
                key: "CANDLECAST_AMQP_CERT_FILE",
                reason: "a client certificate needs its key (CANDLECAST_AMQP_KEY_FILE), and a key its certificate")
        }
        for (key, path) in [
            ("CANDLECAST_AMQP_CA_FILE", caFile), ("CANDLECAST_AMQP_CERT_FILE", certificateFile), ("CANDLECAST_AMQP_KEY_FILE", keyFile),
        ]
        where !path.isEmpty && !FileManager.default.isReadableFile(atPath: path) {
            throw ConfigurationError(.unreadableFile, key: key, reason: "cannot read \(path)")
        }
        let tls =
            caFile.isEmpty
            ? nil
            : BrokerConfiguration.TLS(
                caFile: caFile, certificateFile: certificateFile.isEmpty ? nil : certificateFile, keyFile: keyFile.isEmpty ? nil : keyFile)
        do {
            var broker = try BrokerConfiguration(url: amqpURL, password: amqpPassword, heartbeatSeconds: heartbeat, tls: tls)
            broker.connectionName = service
            return broker
        } catch {
            throw ConfigurationError(key: "CANDLECAST_AMQP_URL", reason: (error as? BrokerError)?.message ?? "\(error)")
        }
    }

    public init(service: String, defaultHTTPPort: Int, environment: EnvironmentReader = EnvironmentReader()) throws {
        self.environment = environment
        broker = try Self.broker(service: service, environment: environment)
        guard let databasePassword = try environment.secret("CANDLECAST_DATABASE_PASSWORD") else {
            throw ConfigurationError(
                .missing, key: "CANDLECAST_DATABASE_PASSWORD", reason: "required: set it or CANDLECAST_DATABASE_PASSWORD_FILE")
        }
        let databaseURL = environment.string("CANDLECAST_DATABASE_URL", default: "postgresql://candlecast@127.0.0.1:5432/candlecast")
        // libpq's own URI rule: several hosts (`db1:5432,db2:5432`) with `target_session_attrs=read-write` follow a
        // failover to the new primary.
        if let problem = DatabaseConfiguration.problem(with: databaseURL) {
            throw ConfigurationError(key: "CANDLECAST_DATABASE_URL", reason: problem)
        }
        database = DatabaseConfiguration(
            url: databaseURL,
            password: databasePassword, applicationName: service)
        databaseConnections = try environment.int("CANDLECAST_DATABASE_CONNECTIONS", default: 2, in: 1...100)
        httpHost = environment.string("CANDLECAST_HTTP_HOST", default: "127.0.0.1")
        httpPort = try environment.int("CANDLECAST_HTTP_PORT", default: defaultHTTPPort, in: 0...65535)
        let level = environment.string("CANDLECAST_LOG_LEVEL", default: "info")
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw ConfigurationError(key: "CANDLECAST_LOG_LEVEL", reason: "\(level) is not a log level")
        }
        self.logLevel = logLevel
        let format = environment.string("CANDLECAST_LOG_FORMAT", default: "json")
        guard let logFormat = LogFormat(rawValue: format) else {
            throw ConfigurationError(key: "CANDLECAST_LOG_FORMAT", reason: "\(format) is neither json nor text")
        }
        self.logFormat = logFormat
        maximumDeliveryAttempts = try environment.int(
            "CANDLECAST_MAX_DELIVERY_ATTEMPTS", default: 5, in: 1...(ServiceName.deliveryLimit - 1))
    }
}
