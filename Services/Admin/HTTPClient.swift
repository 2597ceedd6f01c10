import Foundation
import ServiceKit
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// JSON over HTTP to a service, with the errors a person can read.
struct ServiceHTTP {
    let base: String
    var token: String? = nil

    func get(_ path: String) async throws -> JSON {
        try await request("GET", path, body: nil)
    }

    func post(_ path: String, _ body: [String: Any]) async throws -> JSON {
        try await request("POST", path, body: try JSONSerialization.data(withJSONObject: body))
    }

    func text(_ path: String) async throws -> String {
        guard let url = URL(string: base + path) else { throw CommandFailure.refused("\(base + path) is not a URL") }
        let (data, _) = try await URLSession.shared.fetch(URLRequest(url: url))
        return String(decoding: data, as: UTF8.self)
    }

    func request(_ method: String, _ path: String, body: Data?) async throws -> JSON {
        guard let url = URL(string: base + path) else { throw CommandFailure.refused("\(base + path) is not a URL") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.fetch(request)
        } catch {
            throw CommandFailure.unreachable("cannot reach \(base) (\(error.localizedDescription)); is the service running?")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = try? JSONDecoder().decode(JSON.self, from: data)
        guard (200..<300).contains(status) else {
            let message = json?["error"]["message"].string ?? String(decoding: data.prefix(300), as: UTF8.self)
            throw CommandFailure.refused("\(method) \(path): \(status) \(message)")
        }
        return json ?? .null
    }
}

/// Plain-text tables for the terminal.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let widths = header.indices.map { column in ([header[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

}

/// A JSON value as the services answer it; subscripts return `.null` for what is missing.
enum JSON: Decodable, Sendable, CustomStringConvertible {
    case null, bool(Bool), number(Double), string(String), array([JSON]), object([String: JSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSON].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSON].self)) }
    }

    subscript(key: String) -> JSON {
        if case .object(let object) = self { return object[key] ?? .null }
        return .null
    }
    var array: [JSON] { if case .array(let values) = self { return values } else { return [] } }
    var object: [String: JSON] { if case .object(let values) = self { return values } else { return [:] } }
    var string: String? { if case .string(let value) = self { return value } else { return nil } }
    var number: Double? { if case .number(let value) = self { return value } else { return nil } }
    var int: Int? { number.map { Int($0) } }
    var isNull: Bool { if case .null = self { return true } else { return false } }

    /// For a table cell: integers without decimals, other numbers with four significant digits.
    var description: String {
        switch self {
        case .null: return "-"
        case .bool(let value): return value ? "yes" : "no"
        case .number(let value): return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.4g", value)
        case .string(let value): return value
        case .array(let values): return values.map(\.description).joined(separator: ",")
        case .object(let values): return values.keys.sorted().map { "\($0)=\(values[$0]!.description)" }.joined(separator: " ")
        }
    }
}
