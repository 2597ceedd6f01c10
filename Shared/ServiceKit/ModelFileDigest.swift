import Crypto
import Foundation

/// How a model file is identified between the trainer, the registry and the predictor: its SHA-256 as 64 lowercase
/// hex digits (`X-Checksum-SHA256`, `artifact_sha256`, `training.completed`'s `artifact.sha256`), and the same
/// digest as RFC 9530's `Repr-Digest`. Written by hand beside the generated code: one rule for every side of the API.
public enum ModelFileDigest {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    public static func sha256Hex(_ bytes: some DataProtocol) -> String {
        hex(Array(SHA256.hash(data: bytes)))
    }

    public static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { hexDigits.contains($0) }
    }

    /// `sha-256=:<base64 of the digest>:` for a digest written as hex (`isSHA256Hex`).
    public static func reprDigest(ofHex digest: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var high: UInt8?
        for character in digest.utf8 {
            guard let nibble = hexDigits.firstIndex(of: character).map(UInt8.init) else { continue }
            if let value = high {
                bytes.append(value << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return "sha-256=:\(Data(bytes).base64EncodedString()):"
    }

    static func hex(_ bytes: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
