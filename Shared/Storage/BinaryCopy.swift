/// One value of a row for `COPY ... FROM STDIN (FORMAT binary)`, in the column's own type: the server then parses
/// no text (a backfill's `numeric_in` alone was an eighth of PostgreSQL's time in COPY).
public enum BinaryCopyValue: Sendable, Equatable {
    case null
    case text(String)
    /// An `integer` column.
    case int32(Int32)
    /// A `bigint` column.
    case int64(Int64)
    /// A `numeric` column, from plain decimal text (`-12.340`): stored exactly as that text would be.
    case numeric(String)
}

/// PostgreSQL's binary `numeric`: base-10000 digits with a weight, a sign and a display scale.
public enum PostgresNumeric {
    /// Appends the COPY binary field (length, then value) that `numeric_in` would make of `text`: the same value and
    /// display scale, so `::text` reads back the same. False, with nothing appended, when `text` is not a plain
    /// decimal: an optional sign, then digits with at most one point, at least one digit, at most 1,000 characters
    /// (no exponent, spaces, NaN or infinity). Builds no array: a backfill calls it six times a row.
    public static func appendField(decimal text: String, to buffer: inout [UInt8]) -> Bool {
        var text = text
        return text.withUTF8 { appendField(decimal: $0, to: &buffer) }
    }

    private static func appendField(decimal utf8: UnsafeBufferPointer<UInt8>, to buffer: inout [UInt8]) -> Bool {
        guard utf8.count <= 1000, let first = utf8.first else { return false }
        let negative = first == UInt8(ascii: "-")
        let start = negative || first == UInt8(ascii: "+") ? 1 : 0
        // Pass 1: the significant integer digits (leading zeros dropped) and the fraction digits.
        var integerDigits = 0
        var fractionDigits = 0
        var point = -1
        var seenDigit = false
        for index in start..<utf8.count {
            let byte = utf8[index]
            if byte &- UInt8(ascii: "0") < 10 {
                seenDigit = true
                if point >= 0 {
                    fractionDigits += 1
                } else if integerDigits > 0 || byte != UInt8(ascii: "0") {
                    integerDigits += 1
                }
            } else if byte == UInt8(ascii: "."), point < 0 {
                point = index
            } else {
                return false
            }
        }
        guard seenDigit else { return false }
        // Pass 2, into room reserved for the most groups the digits can span (then trimmed): digit by digit from
        // 10^(integerDigits - 1) down, each base-10000 group (floor(power / 4)) summed. Leading zero groups move the
        // weight; trailing ones are dropped; inner ones are written when a non-zero group follows.
        let lengthAt = buffer.count
        let room = 12 + 2 * ((integerDigits + fractionDigits) / 4 + 2)
        buffer.append(contentsOf: repeatElement(0, count: room))
        let used = buffer.withUnsafeMutableBufferPointer { whole -> Int in
            let field = UnsafeMutableBufferPointer(rebasing: whole[lengthAt...])
            var end = 12
            var weight = 0
            var groupsWritten = 0
            var pendingZeroGroups = 0
            var power = integerDigits - 1
            var group = power >= 0 ? power / 4 : -((-power + 3) / 4)
            var accumulator = 0
            var index = start
            // The integer part's leading zeros were not counted.
            while index < utf8.count, index != point, utf8[index] == UInt8(ascii: "0") { index += 1 }
            while true {
                let atEnd = index == utf8.count
                let groupOfDigit = power >= 0 ? power / 4 : -((-power + 3) / 4)
                if atEnd || groupOfDigit != group {
                    if accumulator != 0 {
                        if groupsWritten == 0 { weight = group }
                        end += 2 * pendingZeroGroups  // already zero
                        groupsWritten += pendingZeroGroups + 1
                        pendingZeroGroups = 0
                        field[end] = UInt8(truncatingIfNeeded: accumulator >> 8)
                        field[end + 1] = UInt8(truncatingIfNeeded: accumulator)
                        end += 2
                    } else if groupsWritten > 0 {
                        pendingZeroGroups += 1
                    }
                    if atEnd { break }
                    group = groupOfDigit
                    accumulator = 0
                }
                if index == point {
                    index += 1
                    continue
                }
                let place = power - group * 4
                let digit = Int(utf8[index] &- UInt8(ascii: "0"))
                accumulator += place == 0 ? digit : place == 1 ? digit * 10 : place == 2 ? digit * 100 : digit * 1000
                power -= 1
                index += 1
            }
            let length = end - 4
            let fields = (groupsWritten, groupsWritten == 0 ? 0 : weight, negative && groupsWritten > 0 ? 0x4000 : 0, fractionDigits)
            field[0] = UInt8(truncatingIfNeeded: length >> 24)
            field[1] = UInt8(truncatingIfNeeded: length >> 16)
            field[2] = UInt8(truncatingIfNeeded: length >> 8)
            field[3] = UInt8(truncatingIfNeeded: length)
            field[4] = UInt8(truncatingIfNeeded: fields.0 >> 8)
            field[5] = UInt8(truncatingIfNeeded: fields.0)
            field[6] = UInt8(truncatingIfNeeded: fields.1 >> 8)
            field[7] = UInt8(truncatingIfNeeded: fields.1)
            field[8] = UInt8(truncatingIfNeeded: fields.2 >> 8)
            field[9] = UInt8(truncatingIfNeeded: fields.2)
            field[10] = UInt8(truncatingIfNeeded: fields.3 >> 8)
            field[11] = UInt8(truncatingIfNeeded: fields.3)
            return end
        }
        buffer.removeLast(room - used)
        return true
    }
}

extension BinaryCopyValue {
    /// Appends the COPY binary field: its length (-1 for NULL), then its bytes.
    func appendField(to buffer: inout [UInt8]) throws(PostgresError) {
        func appendBigEndian<Value: FixedWidthInteger>(_ value: Value) {
            withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) }
        }
        switch self {
        case .null:
            appendBigEndian(Int32(-1))
        case .text(let text):
            guard !text.utf8.contains(0) else { throw PostgresError(.client, "text for COPY holds a NUL byte") }
            appendBigEndian(Int32(text.utf8.count))
            buffer.append(contentsOf: text.utf8)
        case .int32(let value):
            appendBigEndian(Int32(4))
            appendBigEndian(value)
        case .int64(let value):
            appendBigEndian(Int32(8))
            appendBigEndian(value)
        case .numeric(let text):
            guard PostgresNumeric.appendField(decimal: text, to: &buffer) else {
                throw PostgresError(.client, "\(text.prefix(40)) is not a plain decimal for a numeric column")
            }
        }
    }
}
