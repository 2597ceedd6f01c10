import Foundation

/// Where and how to reach RabbitMQ. Credentials never have a default outside loopback: the URL's user and
/// password come from the environment (see ServiceKit's configuration), never from the repository.
public struct BrokerConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var virtualHost: String
    public var user: String
    public var password: String
    /// Heartbeat interval negotiated with the broker, in seconds (0 disables heartbeats).
    public var heartbeatSeconds: Int
    /// How long a TCP connect and the AMQP handshake may take.
    public var connectTimeout: Duration
    /// First and maximum delay between reconnection attempts (exponential backoff between them).
    public var reconnectBackoff: ClosedRange<Duration>
    /// The client-provided connection name shown in the management UI.
    public var connectionName: String

    public init(
        host: String = "127.0.0.1", port: Int = 5672, virtualHost: String = "/", user: String, password: String,
        heartbeatSeconds: Int = 30, connectTimeout: Duration = .seconds(5),
        reconnectBackoff: ClosedRange<Duration> = .milliseconds(100) ... .seconds(5), connectionName: String = "candlecast"
    ) {
        self.host = host
        self.port = port
        self.virtualHost = virtualHost
        self.user = user
        self.password = password
        self.heartbeatSeconds = heartbeatSeconds
        self.connectTimeout = connectTimeout
        self.reconnectBackoff = reconnectBackoff
        self.connectionName = connectionName
    }

    /// Parses `amqp://user:password@host:port/vhost`. A password given separately (from a secret file)
    /// takes precedence over one embedded in the URL.
    public init(url: String, password overridingPassword: String? = nil, heartbeatSeconds: Int = 30) throws {
        guard let components = URLComponents(string: url), components.scheme == "amqp", let host = components.host,
            !host.isEmpty
        else {
            throw BrokerError(.invalidConfiguration, "not an amqp:// URL: \(Self.redacted(url))")
        }
        guard let user = components.user, !user.isEmpty else {
            throw BrokerError(.invalidConfiguration, "the AMQP URL names no user: \(Self.redacted(url))")
        }
        guard let password = overridingPassword ?? components.password else {
            throw BrokerError(.invalidConfiguration, "no AMQP password: set it in the URL or as a secret")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw BrokerError(.invalidConfiguration, "port \(port) is outside 1...65535: \(Self.redacted(url))")
        }
        guard (0...3600).contains(heartbeatSeconds) else {
            throw BrokerError(.invalidConfiguration, "heartbeat \(heartbeatSeconds) s is outside 0...3600")
        }
        var vhost = components.path
        if vhost.hasPrefix("/") { vhost.removeFirst() }
        self.init(
            host: host, port: components.port ?? 5672,
            virtualHost: vhost.isEmpty ? "/" : (vhost.removingPercentEncoding ?? vhost),
            user: user.removingPercentEncoding ?? user, password: password, heartbeatSeconds: heartbeatSeconds)
    }

    /// The URL with its password replaced, for logs.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "****"
        return components.string ?? "<unparseable URL>"
    }
}
