import Crypto

/// Bytes as lowercase hexadecimal, and back: the one spelling of digests, hashes and signatures
/// across the package (log hashes, `sha256:` content digests, SigV4).
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a hex string (either case), or `nil` if it is not one.
    public static func decode(_ hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[i]), let low = value(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    /// 128 bits in a UUID's text form (RFC 9562), lowercase: `8-4-4-4-12` hex digits, `high` first.
    public static func uuid(high: UInt64, low: UInt64) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { out in
            var at = 0
            for digit in 0..<32 {
                if digit == 8 || digit == 12 || digit == 16 || digit == 20 {
                    out[at] = UInt8(ascii: "-")
                    at += 1
                }
                let word = digit < 16 ? high : low
                out[at] = digits.utf8Start[Int(word >> UInt64(60 - 4 * (digit % 16)) & 0xf)]
                at += 1
            }
            return at
        }
    }

    /// `sha256:` and the hex of the SHA-256 of `bytes`: a content digest as OCI and ECR write it.
    public static func sha256Digest(_ bytes: [UInt8]) -> String { "sha256:" + encode(SHA256.hash(data: bytes)) }
}
