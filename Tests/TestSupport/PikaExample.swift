import Foundation

/// Runs examples/python/subscribe_forecasts.py with the test servers' credentials and returns the lines it printed.
public enum PikaExample {
    public static func run(queue: String, pair: String, count: Int, url: String? = nil) async throws -> [String] {
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("examples/python/subscribe_forecasts.py").path
        let output = NSTemporaryDirectory() + "candlecast-pika-\(UUID().uuidString.prefix(8)).out"
        var variables = TestEnvironment.variables
        if let url { variables["CANDLECAST_AMQP_URL"] = url }
        let exports = ["CANDLECAST_AMQP_URL", "CANDLECAST_AMQP_PASSWORD_FILE", "CANDLECAST_AMQP_PASSWORD"].compactMap { key in
            variables[key].map { "\(key)='\($0)'" }
        }.joined(separator: " ")
        let status = try await TestEnvironment.run(
            "/bin/sh",
            ["-c", "\(exports) timeout 120 python3 \(script) --queue \(queue) --pair \(pair) --count \(count) > \(output) 2>\(output).err"])
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw TestSetupError(
                "the pika example exited \(status): \((try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? "")")
        }
        return printed.split(separator: "\n").map(String.init)
    }
}
