import Messaging

/// `broker-url`: `CANDLECAST_AMQP_URL` (an environment value, so anything) through `BrokerConfiguration(url:)`.
/// The first byte picks whether TLS settings and a separate password are given. What is accepted must keep the
/// configuration's rules (1 to 16 nodes, each with a host and a port in 1...65535, a user), and the redacted form
/// of a URL never shows the password it carries.
enum BrokerURLFuzzing {
    static func run(_ bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        let choice = reader.byte()
        let url = String(decoding: reader.bytes, as: UTF8.self)
        let tls: BrokerConfiguration.TLS? = choice & 1 == 1 ? BrokerConfiguration.TLS(caFile: "/run/secrets/ca.pem") : nil
        let separatePassword: String? = choice & 2 == 2 ? "from-a-secret-file" : nil
        let redacted = BrokerConfiguration.redacted(url)
        guard let configuration = try? BrokerConfiguration(url: url, password: separatePassword, tls: tls) else { return false }
        guard (1...BrokerConfiguration.maximumEndpoints).contains(configuration.endpoints.count),
            configuration.endpoints.allSatisfy({ !$0.host.isEmpty && (1...65535).contains($0.port) }), !configuration.user.isEmpty,
            (configuration.tls != nil) == url.hasPrefix("amqps://")
        else {
            fatalError("accepted a broker URL that breaks the configuration's rules: \(url)")
        }
        if separatePassword == nil, !configuration.password.isEmpty, redacted.contains(":\(configuration.password)@") {
            fatalError("the redacted URL shows the password: \(redacted)")
        }
        return true
    }

    static let seeds: [(name: String, bytes: [UInt8])] = [
        ("local", 0, "amqp://candlecast:secret@127.0.0.1:5672/"),
        ("cluster", 2, "amqp://candlecast_predictor@rabbit-1:5672,rabbit-2:5672,rabbit-3/prod"),
        ("tls", 3, "amqps://svc@localhost:5671/candlecast-tests"),
        ("ipv6", 2, "amqp://svc@[::1]:5672,[fe80::1%25eth0]/"),
        ("encoded", 0, "amqp://us%40er:p%3Ass@h:1/v%2Fhost"),
    ].map { (name: $0.0, bytes: [UInt8($0.1)] + Array($0.2.utf8)) }
}
