public import AWSJSON
public import UploadCore

/// A layer part still in its request: `layerPartBlob`'s standard base64 (RFC 4648 §4, padded),
/// read in place from the request body and decoded a chunk at a time as it is staged and hashed.
///
/// Memory per part in flight: the request body (which the signature check has already read
/// whole: at most the AWS JSON body limit) plus one decoded chunk (``chunkBytes``). The decoded
/// part, a `String` of the text and a copy of either never exist.
public struct Base64Part: PartBytes {
    /// Decoded bytes per chunk: cache-sized, so each is hashed and written while it is warm.
    public static let chunkBytes = 48 * 1024

    private let text: ArraySlice<UInt8>
    public let byteCount: UInt64

    /// Checks the text's shape (length and padding); its characters are checked as they decode.
    /// Text that is not base64 is ``SerializationError`` (a blob member that does not decode is
    /// `SerializationException` in Smithy's AWS JSON protocols, as in `logoImageBlob`); a part
    /// past the model's bound is ``CommandError``.
    public init(_ text: ArraySlice<UInt8>) throws {
        guard text.count % 4 == 0 else { throw Self.invalid }
        let padding = text.suffix(2).reversed().prefix { $0 == UInt8(ascii: "=") }.count
        self.text = text
        byteCount = UInt64(text.count / 4 * 3 - padding)
        // The model's bound, checked before any state is read or byte hashed, as every model bound is.
        guard byteCount <= UploadLayerPart.maximumPartBytes else {
            throw CommandError(.invalidParameter, "1 validation error detected: Value at 'layerPartBlob' failed to satisfy constraint: Member must have length less than or equal to \(UploadLayerPart.maximumPartBytes)")
        }
    }

    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let quadsPerChunk = Self.chunkBytes / 3
        var output = [UInt8](repeating: 0, count: Self.chunkBytes)
        try text.withUnsafeBufferPointer { input in
            var quad = 0
            let quads = input.count / 4
            while quad < quads {
                let end = min(quads, quad + quadsPerChunk)
                let produced = try output.withUnsafeMutableBufferPointer { out in
                    try Self.decode(input, quads: quad..<end, last: end == quads, into: out)
                }
                try output.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[..<produced])) }
                quad = end
            }
        }
    }

    /// Decodes whole quads; `last` when the range ends the text (its final quad may be padded).
    /// - Returns: how many bytes it wrote.
    private static func decode(
        _ input: UnsafeBufferPointer<UInt8>, quads: Range<Int>, last: Bool, into out: UnsafeMutableBufferPointer<UInt8>
    ) throws(SerializationError) -> Int {
        var written = 0
        let full = last ? quads.upperBound - 1 : quads.upperBound
        var bad: UInt8 = 0
        var q = quads.lowerBound
        while q < full {
            let i = q * 4
            let a = table[Int(input[i])], b = table[Int(input[i + 1])], c = table[Int(input[i + 2])], d = table[Int(input[i + 3])]
            bad |= (a | b | c | d) & 0x80
            out[written] = a << 2 | b >> 4
            out[written + 1] = b << 4 | c >> 2
            out[written + 2] = c << 6 | d
            written += 3
            q += 1
        }
        guard bad == 0 else { throw invalid }
        if last && !quads.isEmpty {
            let i = full * 4
            let a = table[Int(input[i])], b = table[Int(input[i + 1])]
            let (x, y) = (input[i + 2], input[i + 3])
            let equals = UInt8(ascii: "=")
            guard (a | b) & 0x80 == 0 else { throw invalid }
            out[written] = a << 2 | b >> 4
            written += 1
            if x == equals {
                guard y == equals else { throw invalid }
            } else {
                let c = table[Int(x)]
                guard c & 0x80 == 0 else { throw invalid }
                out[written] = b << 4 | c >> 2
                written += 1
                if y != equals {
                    let d = table[Int(y)]
                    guard d & 0x80 == 0 else { throw invalid }
                    out[written] = c << 6 | d
                    written += 1
                }
            }
        }
        return written
    }

    private static let invalid = SerializationError("'layerPartBlob' must be standard base64")

    /// Each byte's 6-bit value; 0x80 marks a byte outside the alphabet.
    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 0x80, count: 256)
        for (value, char) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(char)] = UInt8(value)
        }
        return table
    }()
}
