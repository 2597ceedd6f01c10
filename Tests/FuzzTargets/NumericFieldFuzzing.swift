import Storage

/// `numeric-field`: any text through `PostgresNumeric.appendField` (the backfill's binary COPY of prices). What is
/// accepted must be a plain decimal, and its bytes, decoded here independently of the encoder, must read back as
/// the text PostgreSQL prints for that decimal (`numeric_out`: the integer part without leading zeros, at least
/// `0`; then exactly as many fraction digits as the text has; `-` only for a non-zero value). What is refused must
/// not be a plain decimal, and leaves the buffer as it was.
enum NumericFieldFuzzing {
    static func run(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        let prefix: [UInt8] = [7, 7, 7]
        var buffer = prefix
        let accepted = PostgresNumeric.appendField(decimal: text, to: &buffer)
        let expected = expectedText(text)
        guard accepted else {
            guard expected == nil, buffer == prefix else { fatalError("refused the plain decimal \(text)") }
            return false
        }
        guard let expected else { fatalError("accepted \(text), which is not a plain decimal") }
        guard Array(buffer.prefix(3)) == prefix, let decoded = decode(Array(buffer.dropFirst(3))) else {
            fatalError("the field for \(text) is malformed: \(buffer)")
        }
        guard decoded == expected else { fatalError("\(text) encodes as \(decoded), PostgreSQL prints \(expected)") }
        return true
    }

    /// What `numeric_out` prints for a plain decimal, or nil for anything else. On bytes: a digit followed by a
    /// combining mark is one `Character`, and not a digit.
    static func expectedText(_ text: String) -> String? {
        var body = Array(text.utf8)[...]
        guard body.count <= 1000 else { return nil }
        var negative = false
        if let sign = body.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            body = body.dropFirst()
        }
        let parts = body.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts.allSatisfy({ $0.allSatisfy { (48...57).contains($0) } }),
            parts.contains(where: { !$0.isEmpty })
        else { return nil }
        let integer = String(decoding: parts[0].drop { $0 == UInt8(ascii: "0") }, as: UTF8.self)
        let fraction = parts.count == 2 ? String(decoding: parts[1], as: UTF8.self) : ""
        let isZero = integer.isEmpty && fraction.allSatisfy { $0 == "0" }
        return (negative && !isZero ? "-" : "") + (integer.isEmpty ? "0" : integer) + (fraction.isEmpty ? "" : "." + fraction)
    }

    /// The COPY binary numeric field back to text: length, ndigits, weight, sign, dscale, base-10000 digits.
    static func decode(_ field: [UInt8]) -> String? {
        func int16(_ at: Int) -> Int { Int(Int16(bitPattern: UInt16(field[at]) << 8 | UInt16(field[at + 1]))) }
        guard field.count >= 12 else { return nil }
        let length = Int(field[0]) << 24 | Int(field[1]) << 16 | Int(field[2]) << 8 | Int(field[3])
        let (count, weight, sign, scale) = (int16(4), int16(6), int16(8), int16(10))
        guard length == field.count - 4, count >= 0, length == 8 + 2 * count, sign == 0 || sign == 0x4000, scale >= 0 else { return nil }
        let groups = (0..<count).map { int16(12 + 2 * $0) }
        guard groups.allSatisfy({ (0...9999).contains($0) }), groups.first != 0, groups.last != 0 else { return nil }
        // No digit below the display scale: PostgreSQL would cut it off, and the stored value would differ.
        if let last = groups.last {
            let lowestPower = 4 * (weight - (count - 1)) + (0..<4).first { last / [1, 10, 100, 1000][$0] % 10 != 0 }!
            guard lowestPower >= -scale else { return nil }
        }
        // Digit d of group g (weight w, then w - 1, ...) is worth 10^(4 * (w - g) + 3 - d).
        var integer = ""
        for power in stride(from: 4 * max(weight, 0) + 3, through: 0, by: -1) {
            integer.append(Character(String(digit(groups: groups, weight: weight, power: power))))
        }
        let trimmed = integer.drop { $0 == "0" }
        var text = (sign == 0x4000 ? "-" : "") + (trimmed.isEmpty ? "0" : String(trimmed))
        if scale > 0 {
            text += "." + (1...scale).map { String(digit(groups: groups, weight: weight, power: -$0)) }.joined()
        }
        return text
    }

    private static func digit(groups: [Int], weight: Int, power: Int) -> Int {
        let group = power >= 0 ? power / 4 : -((-power + 3) / 4)
        let index = weight - group
        guard groups.indices.contains(index) else { return 0 }
        return groups[index] / [1, 10, 100, 1000][power - 4 * group] % 10
    }

    static let seeds: [(name: String, bytes: [UInt8])] = [
        "42000.1", "0.00005", "-12.340", "100000001", "0", "-0.000", ".5", "5.", "9999.9999", "1e5", "",
    ].enumerated().map { (name: "decimal-\($0.offset)", bytes: Array($0.element.utf8)) }
}
