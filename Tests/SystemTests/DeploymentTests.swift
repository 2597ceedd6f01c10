import Foundation
import TestSupport
import Testing

/// compose/: the files are valid for `docker-compose config`, and every service gets every variable it reads.
@Suite("Deployment: compose file and environment coverage")
struct DeploymentTests {
    static let root = TestEnvironment.repositoryRoot
    static let services = ["ingestor", "preprocessor", "trainer", "registry", "predictor", "monitor"]
    /// Libraries every service links, whose variables every service reads.
    static let sharedFolders = ["Shared/ServiceKit", "Shared/Messaging", "Shared/Storage", "Shared/Contracts", "Shared/Forecasting"]

    /// A compose deployment: the files given to docker-compose, in order, and the Candlecast services it runs
    /// besides the six of the base file (service name: the executable it runs).
    struct Variant: Sendable, CustomTestStringConvertible {
        let name: String
        let files: [String]
        let replicas: [String: String]
        var testDescription: String { name }

        /// Every Candlecast service of the deployment and the executable it runs.
        var services: [String: String] {
            Dictionary(uniqueKeysWithValues: DeploymentTests.services.map { ($0, $0) }).merging(replicas) { _, replica in replica }
        }
    }

    static let base = Variant(name: "base", files: ["compose/docker-compose.yml"], replicas: [:])
    static let cluster = Variant(
        name: "cluster", files: ["compose/docker-compose.yml", "compose/docker-compose.cluster.yml"],
        replicas: ["preprocessor-2": "preprocessor", "registry-2": "registry", "predictor-2": "predictor"])
    static let tls = Variant(name: "tls", files: ["compose/docker-compose.yml", "compose/docker-compose.tls.yml"], replicas: [:])
    /// TLS for the cluster: both overrides, then the cluster's TLS file last (its header says why).
    static let clusterTLS = Variant(
        name: "cluster+tls",
        files: [
            "compose/docker-compose.yml", "compose/docker-compose.cluster.yml", "compose/docker-compose.tls.yml",
            "compose/docker-compose.cluster-tls.yml",
        ],
        replicas: cluster.replicas)
    static let variants = [base, cluster, tls, clusterTLS]
    static let tlsVariants = [tls, clusterTLS]
    /// The TLS overrides: a TLS variant without them is the plain variant it secures.
    static let tlsFiles: Set<String> = ["compose/docker-compose.tls.yml", "compose/docker-compose.cluster-tls.yml"]
    /// The cluster variant's own secrets, which the base file does not read.
    static let clusterSecrets: Set<String> = ["CANDLECAST_RABBITMQ_ERLANG_COOKIE", "CANDLECAST_PG_REPLICATION_PASSWORD"]

    @Test("docker-compose config accepts the file with a filled .env, and refuses to start without the secrets")
    func composeConfig() async throws {
        let filled = try filledEnvironmentFile()
        let example = Self.root.appendingPathComponent("compose/.env.example").path
        for variant in Self.variants {
            let files = composeFiles(variant.files)
            #expect(try await shell("docker-compose \(files) --env-file \(filled) config -q") == 0, "\(variant.name)")
            // The example has empty secrets: compose must refuse it rather than start with blank passwords.
            #expect(try await shell("docker-compose \(files) --env-file \(example) config -q 2>/dev/null") != 0, "\(variant.name)")
            // Trainers scale: no fixed container name, no published port.
            let config = try await composeJSON(files: variant.files, envFile: filled)
            let trainer = try #require(config["services"]?[dynamicMember: "trainer"])
            #expect(trainer["container_name"] == nil && trainer["ports"] == nil, "\(variant.name)")
            // No guest user and no default password anywhere.
            for file in variant.files {
                let text = try String(contentsOfFile: Self.root.appendingPathComponent(file).path, encoding: .utf8)
                #expect(!text.contains("guest"), "\(file)")
            }
        }
        // The cluster's own secrets are required by the cluster variant only.
        let withoutClusterSecrets = try filledEnvironmentFile(leavingEmpty: Self.clusterSecrets)
        #expect(try await shell("docker-compose \(composeFiles(Self.base.files)) --env-file \(withoutClusterSecrets) config -q") == 0)
        for secret in Self.clusterSecrets.sorted() {
            let without = try filledEnvironmentFile(leavingEmpty: [secret])
            #expect(
                try await shell("docker-compose \(composeFiles(Self.cluster.files)) --env-file \(without) config -q 2>/dev/null") != 0,
                "the cluster variant starts without \(secret)")
        }
    }

    @Test(
        "every CANDLECAST_ variable a service reads is set for it in the compose file or has a default in code",
        arguments: Self.variants)
    func environmentCoverage(variant: Variant) async throws {
        let filled = try filledEnvironmentFile()
        let config = try await composeJSON(files: variant.files, envFile: filled)
        for (service, executable) in variant.services.sorted(by: { $0.key < $1.key }) {
            let folder = "Services/" + executable.prefix(1).uppercased() + executable.dropFirst()
            let sources = try ([folder] + Self.sharedFolders).flatMap(swiftSources)
            var read = Set<String>()
            var defaulted = Set<String>()
            var secrets = Set<String>()
            for text in sources {
                for match in text.matches(of: /"(CANDLECAST_[A-Z0-9_]+)"/) { read.insert(String(match.1)) }
                // The key may be on the next line (a call swift-format wrapped).
                for match in text.matches(of: /\.(?:string|int|double)\(\s*"(CANDLECAST_[A-Z0-9_]+)", default:/) {
                    defaulted.insert(String(match.1))
                }
                for match in text.matches(of: /\.secret\("(CANDLECAST_[A-Z0-9_]+)"\)/) { secrets.insert(String(match.1)) }
            }
            let environment = Set((config["services"]?[dynamicMember: service]?["environment"] as? [String: Any] ?? [:]).keys)
            #expect(!environment.isEmpty, "\(service) has no environment in the compose file")
            for key in read.sorted() where !key.hasSuffix("_FILE") {
                let covered =
                    environment.contains(key) || environment.contains(key + "_FILE") || defaulted.contains(key)
                    || (secrets.contains(key) && Self.optionalSecrets.contains(key))
                #expect(covered, "\(service) reads \(key), which compose does not set and the code has no default for")
            }
        }
    }

    @Test("the cluster variant: three RabbitMQ nodes and a standby, every service on all of them as its own user, replicas as originals")
    func clusterVariant() async throws {
        let filled = try filledEnvironmentFile()
        let config = try await composeJSON(files: Self.cluster.files, envFile: filled)
        let baseConfig = try await composeJSON(files: Self.base.files, envFile: filled)
        let services = try #require(config["services"])
        let baseServices = try #require(baseConfig["services"])

        // Three nodes of one image and one Erlang cookie, each with a host name and a volume of its own.
        let nodes = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
        let brokers = services.keys.filter { $0.hasPrefix("rabbitmq") }.sorted()
        #expect(brokers == nodes)
        let brokerImage = try canonical(baseServices[dynamicMember: "rabbitmq"]?["image"])
        var cookies = Set<String>()
        var volumes = Set<String>()
        for node in nodes {
            let service = try #require(services[dynamicMember: node], "\(node) is missing")
            let image = try canonical(service["image"])
            #expect(image == brokerImage, "\(node)")
            #expect(service["hostname"] as? String == node)
            let environment = service["environment"] as? [String: Any] ?? [:]
            cookies.insert(environment["CANDLECAST_RABBITMQ_ERLANG_COOKIE"] as? String ?? "")
            for mount in service["volumes"] as? [String] ?? [] where !mount.hasPrefix("/") {
                volumes.insert(String(mount.prefix { $0 != ":" }))
            }
            #expect(service["healthcheck"] != nil, "\(node) has no health check")
        }
        #expect(cookies.count == 1 && !cookies.contains(""), "the nodes do not share one Erlang cookie")
        #expect(volumes == ["rabbitmq-data", "rabbitmq-2-data", "rabbitmq-3-data"])

        // A standby of the primary's image, which the primary waits for on every commit.
        let standby = try #require(services[dynamicMember: "postgres-standby"], "postgres-standby is missing")
        let standbyImage = try canonical(standby["image"])
        let primaryImage = try canonical(baseServices[dynamicMember: "postgres"]?["image"])
        #expect(standbyImage == primaryImage)
        #expect(standby["healthcheck"] != nil)
        let primaryCommand = services[dynamicMember: "postgres"]?["command"] as? [String] ?? []
        #expect(primaryCommand.contains("synchronous_standby_names=candlecast_standby"))
        let standbyScript = try String(
            contentsOfFile: Self.root.appendingPathComponent("compose/postgres/standby.sh").path, encoding: .utf8)
        #expect(standbyScript.contains("application_name=candlecast_standby"))

        // Every service that names the broker lists the three nodes, and every one that names the database both
        // servers, taking writes only.
        let nodeHosts = Set(nodes.map { $0 + ":5672" })
        for (name, value) in services.sorted(by: { $0.key < $1.key }) {
            let environment = (value as? [String: Any])?["environment"] as? [String: Any] ?? [:]
            if let url = environment["CANDLECAST_AMQP_URL"] as? String {
                let hosts = MultiHostURL(url).hosts
                #expect(hosts.count == 3 && Set(hosts) == nodeHosts, "\(name): \(url)")
            }
            if let url = environment["CANDLECAST_DATABASE_URL"] as? String {
                let parsed = MultiHostURL(url)
                #expect(parsed.hosts == ["postgres:5432", "postgres-standby:5432"], "\(name): \(url)")
                #expect(parsed.query.contains("target_session_attrs=read-write"), "\(name): \(url)")
            }
        }

        // Each Candlecast service, replicas included, connects as its own user and role, as in the base file.
        for (name, executable) in Self.cluster.services.sorted(by: { $0.key < $1.key }) {
            let environment = services[dynamicMember: name]?["environment"] as? [String: Any] ?? [:]
            let original = baseServices[dynamicMember: executable]?["environment"] as? [String: Any] ?? [:]
            for key in ["CANDLECAST_AMQP_URL", "CANDLECAST_DATABASE_URL"] {
                let url = MultiHostURL(environment[key] as? String ?? "")
                let baseURL = MultiHostURL(original[key] as? String ?? "")
                #expect(!url.user.isEmpty && url.user == baseURL.user, "\(name): \(key) is for \(url.user), not \(baseURL.user)")
                #expect(url.path == baseURL.path, "\(name): \(key)")
            }
        }

        // A replica runs as its original does, but publishes no port.
        for (replica, original) in Self.cluster.replicas.sorted(by: { $0.key < $1.key }) {
            let copy = try #require(services[dynamicMember: replica], "\(replica) is missing")
            let source = try #require(services[dynamicMember: original])
            for key in ["image", "build", "command", "environment", "healthcheck", "depends_on", "restart", "stop_grace_period"] {
                let copied = try canonical(copy[key])
                let expected = try canonical(source[key])
                #expect(copied == expected, "\(replica) differs from \(original) in \(key)")
            }
            #expect(copy["ports"] == nil && copy["container_name"] == nil, "\(replica) publishes a port")
        }
        // The registry's API is reached by name: registry-2 answers for `registry` too.
        let registryNetworks = services[dynamicMember: "registry-2"]?["networks"] as? [String: Any]
        let aliases = (registryNetworks?["default"] as? [String: Any])?["aliases"] as? [String] ?? []
        #expect(aliases.contains("registry"))
    }

    @Test(
        "the TLS variants: every service on amqps:// with the CA and on PostgreSQL with verify-full, as its own user; servers on TLS only",
        arguments: Self.tlsVariants)
    func tlsVariant(variant: Variant) async throws {
        let filled = try filledEnvironmentFile()
        let config = try await composeJSON(files: variant.files, envFile: filled)
        let plainConfig = try await composeJSON(files: variant.files.filter { !Self.tlsFiles.contains($0) }, envFile: filled)
        let services = try #require(config["services"])
        let plainServices = try #require(plainConfig["services"])
        let caFile = "/run/candlecast-tls/ca.pem"
        let script = try String(contentsOfFile: Self.root.appendingPathComponent("compose/tls/make-certs.sh").path, encoding: .utf8)
        let certificateNames = Set(try #require(script.firstMatch(of: /\nNAMES=\(([^)]*)\)/)).1.split(separator: " ").map(String.init))
        #expect(certificateNames.isSuperset(of: ["rabbitmq", "rabbitmq-2", "rabbitmq-3", "postgres", "postgres-standby"]))

        // Every Candlecast service, replicas included, names both servers and has the CA, mounted read-only.
        for name in variant.services.keys.sorted() {
            let service = try #require(services[dynamicMember: name], "\(name) is missing")
            let environment = service["environment"] as? [String: Any] ?? [:]
            #expect(environment["CANDLECAST_AMQP_URL"] != nil && environment["CANDLECAST_DATABASE_URL"] != nil, "\(name)")
            let mounts = service["volumes"] as? [String] ?? []
            #expect(mounts.contains { $0.hasSuffix("/compose/tls/ca.pem:\(caFile):ro") }, "\(name) has no read-only CA at \(caFile)")
        }

        // Whatever names a server (queues-migrate too) does so over TLS, verifying it by a name its certificate
        // carries, and otherwise as in the plain variant: the same user and role, database, hosts, parameters.
        for (name, value) in services.sorted(by: { $0.key < $1.key }) {
            let environment = (value as? [String: Any])?["environment"] as? [String: Any] ?? [:]
            let plain = plainServices[dynamicMember: name]?["environment"] as? [String: Any] ?? [:]
            if let url = environment["CANDLECAST_AMQP_URL"] as? String {
                let parsed = MultiHostURL(url)
                let original = MultiHostURL(plain["CANDLECAST_AMQP_URL"] as? String ?? "")
                #expect(url.hasPrefix("amqps://"), "\(name): \(url)")
                #expect(environment["CANDLECAST_AMQP_CA_FILE"] as? String == caFile, "\(name) sets no CANDLECAST_AMQP_CA_FILE")
                #expect(!parsed.user.isEmpty && parsed.user == original.user && parsed.path == original.path, "\(name): \(url)")
                #expect(parsed.hosts == original.hosts.map { $0.replacingOccurrences(of: ":5672", with: ":5671") }, "\(name): \(url)")
                for host in parsed.hosts {
                    #expect(certificateNames.contains(String(host.prefix { $0 != ":" })), "\(name): \(host) is not in the certificate")
                }
            }
            if let url = environment["CANDLECAST_DATABASE_URL"] as? String {
                let parsed = MultiHostURL(url)
                let original = MultiHostURL(plain["CANDLECAST_DATABASE_URL"] as? String ?? "")
                #expect(parsed.query.contains("sslmode=verify-full") && parsed.query.contains("sslrootcert=\(caFile)"), "\(name): \(url)")
                #expect(!parsed.user.isEmpty && parsed.user == original.user && parsed.path == original.path, "\(name): \(url)")
                #expect(parsed.hosts == original.hosts && Set(parsed.query).isSuperset(of: original.query), "\(name): \(url)")
                for host in parsed.hosts {
                    #expect(certificateNames.contains(String(host.prefix { $0 != ":" })), "\(name): \(host) is not in the certificate")
                }
            }
        }

        // Each server's copy of the key is made by a one-shot in the server's own image, as the user it runs as.
        for (oneShot, server, user) in [("tls-files-rabbitmq", "rabbitmq", "rabbitmq"), ("tls-files-postgres", "postgres", "postgres")] {
            let service = try #require(services[dynamicMember: oneShot], "\(oneShot) is missing")
            let image = try canonical(service["image"])
            let serverImage = try canonical(plainServices[dynamicMember: server]?["image"])
            #expect(image == serverImage, "\(oneShot)")
            #expect((service["entrypoint"] as? [String])?.last == user, "\(oneShot)")
        }

        // Every RabbitMQ node: the TLS listener alone, after its files are copied.
        let brokerConfig = try String(contentsOfFile: Self.root.appendingPathComponent("compose/rabbitmq/tls.conf").path, encoding: .utf8)
        let brokerSettings = Set(brokerConfig.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
        #expect(brokerSettings.isSuperset(of: ["listeners.tcp = none", "listeners.ssl.default = 5671"]))
        #expect(brokerSettings.contains("ssl_options.keyfile = /etc/candlecast-tls/server.key"))
        let nodes = plainServices.keys.filter { $0.hasPrefix("rabbitmq") }.sorted()
        #expect(!nodes.isEmpty)
        for node in nodes {
            let service = try #require(services[dynamicMember: node], "\(node) is missing")
            let mounts = service["volumes"] as? [String] ?? []
            #expect(mounts.contains { $0.hasSuffix("/compose/rabbitmq/tls.conf:/etc/rabbitmq/conf.d/40-tls.conf:ro") }, "\(node)")
            #expect(mounts.contains("rabbitmq-tls:/etc/candlecast-tls:ro"), "\(node)")
            #expect((service["depends_on"] as? [String: Any])?["tls-files-rabbitmq"] != nil, "\(node)")
        }

        // Every PostgreSQL server: ssl=on and hostssl rules, after its files are copied, with the plain variant's
        // other settings (the cluster's synchronous standby) kept.
        let settings: ([String]) -> [String] = { command in zip(command, command.dropFirst()).filter { $0.0 == "-c" }.map { $0.1 } }
        let tlsSettings = [
            "hba_file=/etc/postgresql/candlecast/pg_hba.tls.conf", "ssl=on", "ssl_cert_file=/etc/candlecast-tls/server.pem",
            "ssl_key_file=/etc/candlecast-tls/server.key",
        ]
        for server in ["postgres", "postgres-standby"] where plainServices[dynamicMember: server] != nil {
            let service = try #require(services[dynamicMember: server], "\(server) is missing")
            let command = settings(service["command"] as? [String] ?? [])
            let plainCommand = settings(plainServices[dynamicMember: server]?["command"] as? [String] ?? [])
            #expect(Set(command).isSuperset(of: tlsSettings), "\(server): \(command)")
            for setting in plainCommand where !setting.hasPrefix("hba_file=") {
                #expect(command.contains(setting), "\(server) lost \(setting)")
            }
            let mounts = service["volumes"] as? [String] ?? []
            #expect(mounts.contains("postgres-tls:/etc/candlecast-tls:ro"), "\(server)")
            #expect(mounts.contains { $0.hasSuffix("/compose/postgres/pg_hba.tls.conf:/etc/postgresql/candlecast/pg_hba.tls.conf:ro") })
            #expect((service["depends_on"] as? [String: Any])?["tls-files-postgres"] != nil, "\(server)")
        }
        let hba = try String(contentsOfFile: Self.root.appendingPathComponent("compose/postgres/pg_hba.tls.conf").path, encoding: .utf8)
        for rule in hba.split(separator: "\n").filter({ !$0.hasPrefix("#") }) {
            let fields = rule.split(separator: " ").map(String.init)
            if fields.first == "host" {
                let address = fields.count > 3 ? fields[3] : ""
                #expect(["127.0.0.1/32", "::1/128"].contains(address), "a rule without TLS over the network: \(rule)")
            }
        }

        // A replica has its original's TLS settings too.
        for (replica, original) in variant.replicas.sorted(by: { $0.key < $1.key }) {
            for key in ["environment", "volumes"] {
                let copied = try canonical(services[dynamicMember: replica]?[key])
                let expected = try canonical(services[dynamicMember: original]?[key])
                #expect(copied == expected, "\(replica) differs from \(original) in \(key)")
            }
        }
    }

    /// Secrets a service runs without (the registry's token only guards writes in development).
    static let optionalSecrets: Set<String> = []

    /// compose/.env.example with every secret filled in, as a user would, except those in `empty`.
    private func filledEnvironmentFile(leavingEmpty empty: Set<String> = []) throws -> String {
        let example = try String(contentsOf: Self.root.appendingPathComponent("compose/.env.example"), encoding: .utf8)
        let filled = example.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasSuffix("=") && !line.hasPrefix("#") && !empty.contains(String(line.dropLast()))
                ? line + "test-\(line.dropLast().lowercased())" : String(line)
        }
        let suffix = empty.sorted().map { "-without-" + $0.lowercased() }.joined()
        let path = NSTemporaryDirectory() + "candlecast-compose\(suffix).env"
        try filled.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func swiftSources(_ folder: String) throws -> [String] {
        let url = Self.root.appendingPathComponent(folder)
        let files = FileManager.default.enumerator(atPath: url.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        return try files.map { try String(contentsOf: url.appendingPathComponent($0), encoding: .utf8) }
    }

    /// `-f` for each file, in order (later files override earlier ones).
    private func composeFiles(_ files: [String]) -> String {
        files.map { "-f " + Self.root.appendingPathComponent($0).path }.joined(separator: " ")
    }

    /// The configuration docker-compose makes of `files`, as JSON objects. Each call has an output file of its
    /// own: the tests run in parallel.
    private func composeJSON(files: [String], envFile: String) async throws -> [String: [String: Any]] {
        let output = NSTemporaryDirectory() + "candlecast-compose-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let status = try await shell(
            """
            docker-compose \(composeFiles(files)) --env-file \(envFile) config | python3 -c 'import json, sys, yaml; \
            json.dump(yaml.safe_load(sys.stdin), sys.stdout)' > \(output)
            """
        )
        guard status == 0,
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any]
        else {
            throw TestSetupError("docker-compose config failed (\(status))")
        }
        return object.compactMapValues { $0 as? [String: Any] }.mapValues { $0 }
    }

    /// A value of the compose JSON as text with sorted keys, to compare two services' settings of any type.
    private func canonical(_ value: Any?) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: [value ?? NSNull()], options: .sortedKeys)
        return String(decoding: data, as: UTF8.self)
    }

    private func shell(_ command: String) async throws -> Int32 {
        try await TestEnvironment.run("/bin/sh", ["-c", command])
    }
}

/// A URL that lists several hosts as libpq does (`scheme://user@host1:port,host2:port/path?query`), taken apart.
private struct MultiHostURL {
    var user = ""
    var hosts: [String] = []
    var path = ""
    var query: [String] = []

    init(_ url: String) {
        guard let schemeEnd = url.range(of: "://") else { return }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        if let at = authority.lastIndex(of: "@") {
            user = String(authority[..<at])
            hosts = authority[authority.index(after: at)...].split(separator: ",").map(String.init)
        } else {
            hosts = authority.split(separator: ",").map(String.init)
        }
        let parts = rest[authority.endIndex...].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts.first.map { String($0) } ?? ""
        query = parts.count > 1 ? parts[1].split(separator: "&").map(String.init) : []
    }
}

extension Dictionary where Key == String, Value == Any {
    subscript(dynamicMember key: String) -> [String: Any]? { self[key] as? [String: Any] }
}
