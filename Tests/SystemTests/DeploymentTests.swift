import Foundation
import TestSupport
import Testing

/// compose/: the file is valid for `docker-compose config`, and every service gets every variable it reads.
@Suite("Deployment: compose file and environment coverage")
struct DeploymentTests {
    static let root = TestEnvironment.repositoryRoot
    static let services = ["ingestor", "preprocessor", "trainer", "registry", "predictor", "monitor"]
    /// Libraries every service links, whose variables every service reads.
    static let sharedFolders = ["Shared/ServiceKit", "Shared/Messaging", "Shared/Storage", "Shared/Contracts", "Shared/Forecasting"]

    @Test("docker-compose config accepts the file with a filled .env, and refuses to start without the secrets")
    func composeConfig() async throws {
        let filled = try filledEnvironmentFile()
        let compose = Self.root.appendingPathComponent("compose/docker-compose.yml").path
        #expect(try await shell("docker-compose -f \(compose) --env-file \(filled) config -q") == 0)
        // The example has empty secrets: compose must refuse it rather than start with blank passwords.
        let example = Self.root.appendingPathComponent("compose/.env.example").path
        #expect(try await shell("docker-compose -f \(compose) --env-file \(example) config -q 2>/dev/null") != 0)
        // Trainers scale: no fixed container name, no published port.
        let config = try await composeJSON(envFile: filled)
        let trainer = try #require(config["services"]?[dynamicMember: "trainer"])
        #expect(trainer["container_name"] == nil && trainer["ports"] == nil)
        // No guest user and no default password anywhere.
        let text = try String(contentsOfFile: compose, encoding: .utf8)
        #expect(!text.contains("guest"))
    }

    @Test("every CANDLECAST_ variable a service reads is set for it in the compose file or has a default in code")
    func environmentCoverage() async throws {
        let filled = try filledEnvironmentFile()
        let config = try await composeJSON(envFile: filled)
        for service in Self.services {
            let folder = "Services/" + service.prefix(1).uppercased() + service.dropFirst()
            let sources = try ([folder] + Self.sharedFolders).flatMap(swiftSources)
            var read = Set<String>()
            var defaulted = Set<String>()
            var secrets = Set<String>()
            for text in sources {
                for match in text.matches(of: /"(CANDLECAST_[A-Z0-9_]+)"/) { read.insert(String(match.1)) }
                for match in text.matches(of: /\.(?:string|int|double)\("(CANDLECAST_[A-Z0-9_]+)", default:/) {
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

    /// Secrets a service runs without (the registry's token only guards writes in development).
    static let optionalSecrets: Set<String> = []

    /// compose/.env.example with every secret filled in, as a user would.
    private func filledEnvironmentFile() throws -> String {
        let example = try String(contentsOf: Self.root.appendingPathComponent("compose/.env.example"), encoding: .utf8)
        let filled = example.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasSuffix("=") && !line.hasPrefix("#") ? line + "test-\(line.dropLast().lowercased())" : String(line)
        }
        let path = NSTemporaryDirectory() + "candlecast-compose.env"
        try filled.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func swiftSources(_ folder: String) throws -> [String] {
        let url = Self.root.appendingPathComponent(folder)
        let files = FileManager.default.enumerator(atPath: url.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        return try files.map { try String(contentsOf: url.appendingPathComponent($0), encoding: .utf8) }
    }

    private func composeJSON(envFile: String) async throws -> [String: [String: Any]] {
        let compose = Self.root.appendingPathComponent("compose/docker-compose.yml").path
        let output = NSTemporaryDirectory() + "candlecast-compose.json"
        let status = try await shell(
            """
            docker-compose -f \(compose) --env-file \(envFile) config | python3 -c 'import json, sys, yaml; \
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

    private func shell(_ command: String) async throws -> Int32 {
        try await TestEnvironment.run("/bin/sh", ["-c", command])
    }
}

extension Dictionary where Key == String, Value == Any {
    subscript(dynamicMember key: String) -> [String: Any]? { self[key] as? [String: Any] }
}
