import CRabbitMQ
import Foundation

/// Builds `amqp_table_t` values whose memory stays valid until `deallocate()`: rabbitmq-c keeps the
/// pointers while it encodes a frame, so every key and string lives in a buffer this builder owns.
struct FieldTableBuilder {
    private var allocations: [UnsafeMutableRawPointer] = []

    mutating func bytes(_ text: String) -> amqp_bytes_t {
        bytes(Array(text.utf8))
    }

    mutating func bytes(_ data: [UInt8]) -> amqp_bytes_t {
        guard !data.isEmpty else { return amqp_bytes_t(len: 0, bytes: nil) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: data.count, alignment: 1)
        data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: data.count) }
        allocations.append(buffer)
        return amqp_bytes_t(len: data.count, bytes: buffer)
    }

    mutating func table(_ entries: [String: HeaderValue]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let pointer = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: entries.count)
        allocations.append(UnsafeMutableRawPointer(pointer))
        for (index, (key, value)) in entries.sorted(by: { $0.key < $1.key }).enumerated() {
            (pointer + index).initialize(to: amqp_table_entry_t(key: bytes(key), value: fieldValue(value)))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: pointer)
    }

    private mutating func fieldValue(_ value: HeaderValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = bytes(text)
        case .int(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
            field.value.i64 = number
        case .double(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_F64.rawValue)
            field.value.f64 = number
        case .bool(let flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        case .table(let entries):
            field.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
            field.value.table = table(entries)
        case .array(let values):
            field.kind = UInt8(AMQP_FIELD_KIND_ARRAY.rawValue)
            let pointer = UnsafeMutablePointer<amqp_field_value_t>.allocate(capacity: max(values.count, 1))
            allocations.append(UnsafeMutableRawPointer(pointer))
            for (index, element) in values.enumerated() { (pointer + index).initialize(to: fieldValue(element)) }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: pointer)
        case .unsupported:
            field.kind = UInt8(AMQP_FIELD_KIND_VOID.rawValue)
        }
        return field
    }

    /// Frees every buffer; call once rabbitmq-c has encoded the frame.
    mutating func deallocate() {
        for allocation in allocations { allocation.deallocate() }
        allocations.removeAll()
    }
}

extension amqp_bytes_t {
    /// Copies the bytes out of rabbitmq-c's pool (which is recycled) into Swift-owned memory.
    var byteArray: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    var string: String { String(decoding: byteArray, as: UTF8.self) }
}

enum FieldTableReader {
    static func headers(_ table: amqp_table_t) -> [String: HeaderValue] {
        var result: [String: HeaderValue] = [:]
        guard table.num_entries > 0, let entries = table.entries else { return result }
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            result[entry.key.string] = value(entry.value)
        }
        return result
    }

    static func value(_ field: amqp_field_value_t) -> HeaderValue {
        switch UInt32(field.kind) {
        case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue: return .string(field.value.bytes.string)
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
        case AMQP_FIELD_KIND_I8.rawValue: return .int(Int64(field.value.i8))
        case AMQP_FIELD_KIND_U8.rawValue: return .int(Int64(field.value.u8))
        case AMQP_FIELD_KIND_I16.rawValue: return .int(Int64(field.value.i16))
        case AMQP_FIELD_KIND_U16.rawValue: return .int(Int64(field.value.u16))
        case AMQP_FIELD_KIND_I32.rawValue: return .int(Int64(field.value.i32))
        case AMQP_FIELD_KIND_U32.rawValue: return .int(Int64(field.value.u32))
        case AMQP_FIELD_KIND_I64.rawValue: return .int(field.value.i64)
        case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue:
            return .int(Int64(clamping: field.value.u64))
        case AMQP_FIELD_KIND_F32.rawValue: return .double(Double(field.value.f32))
        case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
        case AMQP_FIELD_KIND_TABLE.rawValue: return .table(headers(field.value.table))
        case AMQP_FIELD_KIND_ARRAY.rawValue:
            let array = field.value.array
            guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
            return .array((0..<Int(array.num_entries)).map { value(entries[$0]) })
        default: return .unsupported(kind: field.kind)
        }
    }
}
