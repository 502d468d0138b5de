import AWSJSON
import ECRRequests
import Foundation
import Testing
import UploadCore

/// `layerPartBlob` is decoded in place, a chunk at a time: the same bytes Foundation's strict
/// decoder gives, the same refusals, and the length it announces before decoding.
struct Base64PartTests {
    static func decode(_ text: String) throws -> [UInt8] {
        let part = try Base64Part(Array(text.utf8)[...])
        var bytes: [UInt8] = []
        try part.forEachChunk { bytes += $0 }
        #expect(UInt64(bytes.count) == part.byteCount, "announced \(part.byteCount), decoded \(bytes.count)")
        return bytes
    }

    @Test(arguments: [0, 1, 2, 3, 4, 5, 47, 48 * 1024 - 1, 48 * 1024, 48 * 1024 + 1, 3 * 48 * 1024 + 2, 1_000_003])
    func everyLength_decodesToTheEncodedBytes(_ length: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try Self.decode(Data(bytes).base64EncodedString()) == bytes)
    }

    @Test(arguments: ["QQ", "QQ=", "Q===", "=QQQ", "QQ==QQ==", "QU JD", "QUJD\n", "QUJ-", "QUJ_", "QUJ\u{e9}"])
    func malformedText_isRefusedAsFoundationRefusesIt(_ text: String) {
        #expect(Data(base64Encoded: text) == nil, "Foundation refuses \(text) too")
        #expect(throws: SerializationError.self) { try Self.decode(text) }
    }

    /// Padding in the middle of a quad, or a whole quad of it: not RFC 4648 base64, though the
    /// lenient decoder in swift-corelibs-foundation takes both.
    @Test(arguments: ["QQ=A", "QUJD===="])
    func paddingOutOfPlace_isRefused(_ text: String) {
        #expect(throws: SerializationError.self) { try Self.decode(text) }
    }

    /// The model's 20,971,520-byte bound is InvalidParameterException from the text's length alone,
    /// before any state is read or byte decoded; the bound itself is taken.
    @Test func aPartPastTheModelsBound_isRefusedFromItsLength() throws {
        let largest = Int(UploadLayerPart.maximumPartBytes)
        let taken = try Base64Part(Array(Data(count: largest).base64EncodedString().utf8)[...])
        #expect(taken.byteCount == UInt64(largest))
        let error = try #require(throws: CommandError.self) { try Base64Part(Array(Data(count: largest + 1).base64EncodedString().utf8)[...]) }
        #expect(error.code == .invalidParameter)
        #expect(error.message.contains("'layerPartBlob'"), "\(error.message)")
    }

    @Test func aBadCharacterDeepInALongPart_isRefused_afterEarlierChunks() throws {
        var text = Array(Data(repeating: 7, count: 200_000).base64EncodedString().utf8)
        text[150_000] = UInt8(ascii: "*")
        let part = try Base64Part(text[...])
        var chunks = 0
        #expect(throws: SerializationError.self) { try part.forEachChunk { _ in chunks += 1 } }
        #expect(chunks >= 2, "the first chunks were already handed on: the caller must undo what it wrote")
    }

    @Test func aLongBlobInABody_isReadInPlace_andEqualsItsString() throws {
        let blob = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0) }).base64EncodedString()
        let body = try AWSJSONBody(Array(#"{"repositoryName":"a/b","uploadId":"u","layerPartBlob":"\#(blob)"}"#.utf8))
        #expect(try body.stringBytes("layerPartBlob").map { Array($0) } == Array(blob.utf8))
        #expect(try body.string("layerPartBlob") == blob)
        #expect(try body.stringBytes("repositoryName").map { Array($0) } == Array("a/b".utf8))
        #expect(throws: SerializationError.self) { try body.int64("layerPartBlob") }
    }
}
