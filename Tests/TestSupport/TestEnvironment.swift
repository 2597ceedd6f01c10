import Foundation
import Logging
import Messaging
import Storage

/// Reaches the local RabbitMQ and PostgreSQL that `scripts/servers.sh start` runs, through the same
/// variables the services read (from the environment, else from the `.local/env` file the script writes).
public enum TestEnvironment {
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `data/` in the repository: the real Kraken files the tests read (`data/SOURCES.md` says where they come from).
    public static let sharedDataDirectory: String = repositoryRoot.appendingPathComponent("data").path

    /// The variables of `.local/env`, overridden by the process environment.
    public static let variables: [String: String] = {
        var values: [String: String] = [:]
        // The local servers, and the broker cluster and database pair when scripts/servers.sh started them.
        for name in [".local/env", ".local/cluster.env", ".local/pair.env"] {
            let file = repositoryRoot.appendingPathComponent(name)
            guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("export ") {
                let assignment = line.dropFirst("export ".count)
                guard let equals = assignment.firstIndex(of: "=") else { continue }
                var value = assignment[assignment.index(after: equals)...]
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
                values[String(assignment[..<equals])] = String(value)
            }
        }
        return values.merging(ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("CANDLECAST_") }) { $1 }
    }()

    static func secret(_ key: String) -> String? {
        if let value = variables[key] { return value }
        guard let path = variables[key + "_FILE"] else { return nil }
        return (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func broker(heartbeatSeconds: Int = 30) throws -> BrokerConfiguration {
        guard let url = variables["CANDLECAST_AMQP_URL"] else {
            throw TestSetupError("CANDLECAST_AMQP_URL is not set: run scripts/servers.sh start (or scripts/test.sh)")
        }
        var configuration = try BrokerConfiguration(
            url: url, password: secret("CANDLECAST_AMQP_PASSWORD"), heartbeatSeconds: heartbeatSeconds)
        configuration.reconnectBackoff = .milliseconds(50) ... .milliseconds(500)
        return configuration
    }

    public static func database() throws -> DatabaseConfiguration {
        guard let url = variables["CANDLECAST_DATABASE_URL"] else {
            throw TestSetupError("CANDLECAST_DATABASE_URL is not set: run scripts/servers.sh start (or scripts/test.sh)")
        }
        return DatabaseConfiguration(url: url, password: secret("CANDLECAST_DATABASE_PASSWORD"), applicationName: "candlecast-tests")
    }

    public static let logger: Logger = {
        var logger = Logger(label: "tests")
        logger.logLevel = .warning
        return logger
    }()

    /// Runs `scripts/servers.sh <command>` (fault injection: stop the broker, restart the database...).
    public static func servers(_ command: String, _ arguments: String...) async throws {
        let status = try await run(repositoryRoot.appendingPathComponent("scripts/servers.sh").path, [command] + arguments)
        guard status == 0 else { throw TestSetupError("scripts/servers.sh \(command) exited \(status)") }
    }

    /// Runs a program to completion on a thread of its own, off the cooperative pool. (posix_spawn and
    /// waitpid rather than Foundation's Process, whose waitUntilExit can hang when the program leaves a
    /// daemon behind, as `pg_ctl restart` does.)
    public static func run(_ executable: String, _ arguments: [String]) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
                defer { for pointer in argv { free(pointer) } }
                var pid: pid_t = 0
                let spawned = posix_spawn(&pid, executable, nil, nil, argv, environ)
                guard spawned == 0 else {
                    continuation.resume(throwing: TestSetupError("cannot run \(executable): \(String(cString: strerror(spawned)))"))
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                let exited = status & 0x7f == 0
                continuation.resume(returning: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }.start()
        }
    }

    /// Runs a program to completion and returns what it printed on stdout (stderr goes to the test's).
    public static func output(_ executable: String, _ arguments: [String]) async throws -> String {
        let file = NSTemporaryDirectory() + "candlecast-output-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let command = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let status = try await run("/bin/sh", ["-c", command + " > '\(file)'"])
        guard status == 0 else { throw TestSetupError("\(executable) \(arguments.joined(separator: " ")) exited \(status)") }
        return (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
    }

    /// A name no other test run uses.
    public static func uniqueName(_ prefix: String) -> String {
        "\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Waits until `condition` holds, polling, or throws after `timeout`.
public func eventually(
    timeout: Duration = .seconds(10), _ what: String, _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestSetupError("timed out after \(timeout) waiting for \(what)")
}
