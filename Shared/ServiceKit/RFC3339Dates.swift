import Foundation
import OpenAPIRuntime

/// The HTTP APIs' one date convention: RFC 3339 in UTC, whole seconds (`2024-01-01T00:00:00Z`), read by every
/// generated client with its default transcoder; what a client sends may carry fractional seconds or any offset.
/// Hand it to a generated server or client as `Configuration(dateTranscoder: RFC3339Dates())`.
public struct RFC3339Dates: DateTranscoder {
    public init() {}

    public func encode(_ date: Date) throws -> String {
        try ISO8601DateTranscoder.iso8601.encode(date)
    }

    public func decode(_ text: String) throws -> Date {
        if let date = try? ISO8601DateTranscoder.iso8601.decode(text) { return date }
        return try ISO8601DateTranscoder.iso8601WithFractionalSeconds.decode(text)
    }
}
