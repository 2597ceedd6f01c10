import Hummingbird
import ServiceKit
import Testing

/// `from`/`to` as every API takes them (HTTPInput.instant / timeRange): RFC 3339 dates or timestamps only.
@Suite("HTTP input: from and to")
struct InstantInputTests {
    @Test("RFC 3339 dates and timestamps in any offset; a date as `to` is its whole day; nothing else")
    func instants() throws {
        #expect(try HTTPInput.instant("2024-01-02", field: "from") == 1_704_153_600)
        #expect(try HTTPInput.instant("2024-01-02", field: "to", endOfDay: true) == 1_704_239_999)
        #expect(try HTTPInput.instant("2024-01-02T00:00:00Z", field: "to", endOfDay: true) == 1_704_153_600)
        #expect(try HTTPInput.instant("2024-01-02T01:30:00.75+01:30", field: "from") == 1_704_153_600)
        #expect(try HTTPInput.instant("2024-01-01t23:00:00-01:00", field: "from") == 1_704_153_600)
        #expect(try HTTPInput.instant("2024-02-29", field: "from") == 1_709_164_800)
        #expect(try HTTPInput.instant("1970-01-01", field: "from") == 0)
        for text in [
            "1704153600", "2023-02-29", "2024-13-01", "2024-00-10", "2024-01-32", "2024-01-02T24:00:00Z", "2024-01-02T12:00:60Z",
            "2024-01-02T12:00:00", "2024-01-02T12:00Z", "2024-01-02 12:00:00Z", "2024-01-02T12:00:00+24:00", "1969-12-31",
            "2100-01-01T00:00:01Z", "24-01-02", "", "2024-01-02T12:00:00.1234567890Z",
        ] {
            #expect(throws: HTTPError.self, "\(text)") { try HTTPInput.instant(text, field: "from") }
        }
        #expect(try HTTPInput.timeRange(from: "2024-01-02", to: "2024-01-02") == 1_704_153_600...1_704_239_999)
        #expect(try HTTPInput.timeRange(from: nil, to: nil) == 0...4_102_444_800)
        #expect(throws: HTTPError.self) { try HTTPInput.timeRange(from: "2024-01-03", to: "2024-01-02") }
    }
}
