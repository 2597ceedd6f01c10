import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A built service executable started as a child process, for tests that treat it as a black box.
public final class ServiceProcess: Sendable {
    public let name: String
    public let pid: pid_t
    public let logFile: String

    /// Starts `.build/debug/<name>` (or `$CANDLECAST_BIN_DIR/<name>`) with the test servers' variables plus `environment`.
    public init(_ name: String, arguments: [String] = [], environment: [String: String]) throws {
        let binDirectory =
            ProcessInfo.processInfo.environment["CANDLECAST_BIN_DIR"]
            ?? TestEnvironment.repositoryRoot.appendingPathComponent(".build/debug").path
        let executable = binDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestSetupError("\(executable) is missing: build first (swift build)")
        }
        self.name = name
        logFile = NSTemporaryDirectory() + "candlecast-\(name)-\(UUID().uuidString.prefix(8)).log"
        var variables = ProcessInfo.processInfo.environment.merging(TestEnvironment.variables) { $1 }
        variables.merge(environment) { $1 }
        let envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer {
            for pointer in envp { free(pointer) }
            for pointer in argv { free(pointer) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard status == 0 else { throw TestSetupError("cannot start \(executable): \(String(cString: strerror(status)))") }
        self.pid = pid
    }

    public func signal(_ signal: Int32) { Glibc.kill(pid, signal) }

    /// Waits for the process to exit; returns its exit status, or nil if it is still running after `timeout`.
    public func waitForExit(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// Makes sure the process is gone (after a failed test).
    public func kill() {
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

/// A GET on loopback: status code and body, or nil when nothing answers.
public func httpGet(_ url: String) async -> (status: Int, body: String)? {
    guard let url = URL(string: url) else { return nil }
    var request = URLRequest(url: url)
    request.timeoutInterval = 2
    guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else {
        return nil
    }
    return (http.statusCode, String(decoding: data, as: UTF8.self))
}

/// An HTTP request on loopback: status, headers and body, or nil when nothing answers.
public func httpRequest(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async -> (
    status: Int, headers: [String: String], body: Data
)? {
    guard let url = URL(string: url) else { return nil }
    var request = URLRequest(url: url)
    request.httpMethod = method
    request.timeoutInterval = 10
    request.httpBody = body
    for (key, value) in headers { request.setValue(value, forHTTPHeaderField: key) }
    guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else {
        return nil
    }
    var fields: [String: String] = [:]
    for (key, value) in http.allHeaderFields { fields["\(key)".lowercased()] = "\(value)" }
    return (http.statusCode, fields, data)
}
