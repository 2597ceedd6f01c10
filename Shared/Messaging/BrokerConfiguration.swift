import Foundation

/// Where and how to reach RabbitMQ. Credentials never have a default outside loopback: the URL's user and
/// password come from the environment (see ServiceKit's configuration), never from the repository.
public struct BrokerConfiguration: Sendable, Equatable {
    /// One node of the broker: a host and its AMQP port.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// AMQP over TLS: the broker's certificate must chain to `caFile` and name the host connected to.
    public struct TLS: Sendable, Equatable {
        /// PEM file of the certificate authorities trusted for the broker's certificate.
        public var caFile: String
        /// PEM client certificate and key, when the broker asks for one.
        public var certificateFile: String?
        public var keyFile: String?
        public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// The broker's nodes, in the order they are tried. A client that loses its node connects to the next.
    public var endpoints: [Endpoint]
    public var tls: TLS?
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

    /// The first node's host and port.
    public var host: String {
        get { endpoints.first?.host ?? "" }
        set { endpoints = [Endpoint(host: newValue, port: port)] + endpoints.dropFirst() }
    }
    public var port: Int {
        get { endpoints.first?.port ?? 5672 }
        set { endpoints = [Endpoint(host: host, port: newValue)] + endpoints.dropFirst() }
    }

    public init(
        host: String = "127.0.0.1", port: Int = 5672, virtualHost: String = "/", user: String, password: String,
        heartbeatSeconds: Int = 30, connectTimeout: Duration = .seconds(5),
        reconnectBackoff: ClosedRange<Duration> = .milliseconds(100) ... .seconds(5), connectionName: String = "candlecast"
    ) {
        self.init(
            endpoints: [Endpoint(host: host, port: port)], virtualHost: virtualHost, user: user, password: password,
            heartbeatSeconds: heartbeatSeconds, connectTimeout: connectTimeout, reconnectBackoff: reconnectBackoff,
            connectionName: connectionName)
    }

    public init(
        endpoints: [Endpoint], tls: TLS? = nil, virtualHost: String = "/", user: String, password: String,
        heartbeatSeconds: Int = 30, connectTimeout: Duration = .seconds(5),
        reconnectBackoff: ClosedRange<Duration> = .milliseconds(100) ... .seconds(5), connectionName: String = "candlecast"
    ) {
        self.endpoints = endpoints
        self.tls = tls
        self.virtualHost = virtualHost
        self.user = user
        self.password = password
        self.heartbeatSeconds = heartbeatSeconds
        self.connectTimeout = connectTimeout
        self.reconnectBackoff = reconnectBackoff
        self.connectionName = connectionName
    }

    /// Most nodes one URL may list.
    public static let maximumEndpoints = 16

    /// Parses `amqp://user:password@host:port/vhost`, or `amqps://` for TLS. Several nodes of one cluster are
    /// listed as libpq lists hosts: `amqp://user@node1:5672,node2:5672,node3/vhost`. A password given
    /// separately (from a secret file) takes precedence over one embedded in the URL. `amqps` needs `tls`
    /// (the CA file); `tls` with a plain `amqp` URL is refused rather than silently unused.
    public init(url: String, password overridingPassword: String? = nil, heartbeatSeconds: Int = 30, tls: TLS? = nil) throws {
        let (scheme, hosts, singleHostURL) = try Self.splitHosts(url)
        guard let components = URLComponents(string: singleHostURL), let user = components.user, !user.isEmpty else {
            throw BrokerError(.invalidConfiguration, "the AMQP URL names no user: \(Self.redacted(url))")
        }
        guard let password = overridingPassword ?? components.password else {
            throw BrokerError(.invalidConfiguration, "no AMQP password: set it in the URL or as a secret")
        }
        guard (0...3600).contains(heartbeatSeconds) else {
            throw BrokerError(.invalidConfiguration, "heartbeat \(heartbeatSeconds) s is outside 0...3600")
        }
        switch (scheme, tls) {
        case ("amqps", nil):
            throw BrokerError(.invalidConfiguration, "an amqps:// URL needs the CA file that signs the broker's certificate")
        case ("amqp", .some):
            throw BrokerError(.invalidConfiguration, "TLS settings are given but the URL is amqp://, not amqps://")
        default:
            break
        }
        let defaultPort = scheme == "amqps" ? 5671 : 5672
        let endpoints = try hosts.map { try Self.endpoint($0, defaultPort: defaultPort, url: url) }
        // URLComponents' `user`, `password` and `path` are decoded already: decoding them again would read `%2540` as `@`.
        var vhost = components.path
        if vhost.hasPrefix("/") { vhost.removeFirst() }
        self.init(
            endpoints: endpoints, tls: tls, virtualHost: vhost.isEmpty ? "/" : vhost, user: user, password: password,
            heartbeatSeconds: heartbeatSeconds)
    }

    /// The scheme, the authority's comma-separated hosts, and the URL with only the first of them (which
    /// URLComponents can read).
    private static func splitHosts(_ url: String) throws -> (scheme: String, hosts: [Substring], singleHostURL: String) {
        // RFC 3986 URLs are printable ASCII (anything else percent-encoded). Refusing the rest here also keeps the
        // Character searches below equal to URLComponents' reading of the same text.
        guard url.unicodeScalars.allSatisfy({ (0x21..<0x7F).contains($0.value) }) else {
            throw BrokerError(
                .invalidConfiguration, "the AMQP URL has a space, a control or a non-ASCII character (percent-encode it): \(redacted(url))")
        }
        guard let schemeEnd = url.range(of: "://"), ["amqp", "amqps"].contains(url[..<schemeEnd.lowerBound]) else {
            throw BrokerError(.invalidConfiguration, "not an amqp:// or amqps:// URL: \(redacted(url))")
        }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        let userInfoEnd = authority.lastIndex(of: "@")
        let hostList = userInfoEnd.map { authority[authority.index(after: $0)...] } ?? authority
        let hosts = hostList.split(separator: ",", omittingEmptySubsequences: false)
        guard !hosts.isEmpty, hosts.allSatisfy({ !$0.isEmpty }) else {
            throw BrokerError(.invalidConfiguration, "the AMQP URL names no host, or an empty one: \(redacted(url))")
        }
        guard hosts.count <= maximumEndpoints else {
            throw BrokerError(.invalidConfiguration, "the AMQP URL lists \(hosts.count) hosts; at most \(maximumEndpoints)")
        }
        let prefix = url[..<(userInfoEnd.map { authority.index(after: $0) } ?? authority.startIndex)]
        return (String(url[..<schemeEnd.lowerBound]), hosts, String(prefix) + hosts[0] + url[authorityEnd...])
    }

    private static func endpoint(_ text: Substring, defaultPort: Int, url: String) throws -> Endpoint {
        var host = text
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                throw BrokerError(.invalidConfiguration, "unclosed [ in the AMQP host \(text): \(redacted(url))")
            }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw BrokerError(.invalidConfiguration, "bad AMQP host \(text): \(redacted(url))") }
                portText = rest.dropFirst()
            }
            // An IPv6 address, with a zone (`%25eth0` in a URL): hex digits, colons, dots and the zone's name.
            guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ":.%".contains($0)) }) else {
                throw BrokerError(.invalidConfiguration, "bad AMQP host \(text): \(redacted(url))")
            }
            host = Substring(host.replacingOccurrences(of: "%25", with: "%"))
        } else {
            if let colon = host.firstIndex(of: ":") {
                portText = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            // A host name or an IPv4 address: ASCII letters, digits, dots, hyphens and underscores only.
            guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_".contains($0)) }) else {
                throw BrokerError(.invalidConfiguration, "bad AMQP host \(text): \(redacted(url))")
            }
        }
        guard let portText else { return Endpoint(host: String(host), port: defaultPort) }
        guard (1...5).contains(portText.count), portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText),
            (1...65535).contains(port)
        else {
            throw BrokerError(.invalidConfiguration, "port \(portText) is outside 1...65535: \(redacted(url))")
        }
        return Endpoint(host: String(host), port: port)
    }

    /// The URL with its password replaced, for logs.
    public static func redacted(_ url: String) -> String {
        // Unicode scalars, not Characters: a combining mark after `:` or `@` hides it from a Character search,
        // while a URL parser still reads it as the separator.
        let scalars = Array(url.unicodeScalars)
        guard let schemeEnd = scalars.indices.dropLast(2).first(where: { scalars[$0...$0 + 2].elementsEqual("://".unicodeScalars) }),
            let at = scalars.lastIndex(of: "@"), schemeEnd + 3 <= at,
            let colon = scalars[(schemeEnd + 3)..<at].firstIndex(of: ":")
        else { return url }
        var result = String.UnicodeScalarView(scalars[..<colon])
        result.append(contentsOf: ":****".unicodeScalars)
        result.append(contentsOf: scalars[at...])
        return String(result)
    }
}
