import Testing
@testable import UploadCore

/// What `@FieldRecord`'s generated decoding refuses inside a record, and the JSON it gives. (The
/// bytes of every record are locked in `FieldLayoutTests`; the expansion in `FieldRecordMacrosTests`.)
struct GeneratedCodecTests {
    let tag = TagRecord(imageDigest: "sha256:ab", createdAt: Timestamp(millisecondsSinceEpoch: 1_000))

    @Test func aRecordWithAFieldItsTypeDoesNotDeclare_isRefused() {
        var writer = FieldWriter()
        tag.encode(into: &writer)
        writer.string(3, "extra")
        #expect(throws: CodecError("tag has unknown field 3")) { try TagRecord(decoding: writer.bytes) }
    }

    @Test func aRecordLackingARequiredField_isRefused_andALackingOptionalOneIsNil() throws {
        var writer = FieldWriter()
        writer.string(1, "sha256:ab")
        #expect(throws: CodecError("tag lacks createdAt")) { try TagRecord(decoding: writer.bytes) }

        let metadata = try RequestMetadata(decoding: RequestMetadata(requestId: "r", source: "cli").encoded())
        #expect(metadata.userAgent == nil && metadata.invocationId == nil)
    }

    @Test func aFieldOfTheWrongWireType_isRefused() {
        var writer = FieldWriter()
        writer.uint(1, 7)
        writer.uint(2, 1_000)
        #expect(throws: CodecError("imageDigest is not UTF-8 text")) { try TagRecord(decoding: writer.bytes) }
    }

    @Test func json_namesTheProperties_leavesOutNil_andKeepsAnEmptyList() {
        #expect(tag.json.text == #"{"createdAt":"1970-01-01T00:00:01.000Z","imageDigest":"sha256:ab"}"#)
        let metadata = RequestMetadata(requestId: "r", source: "cli", principal: "AKID")
        #expect(metadata.json.text == #"{"principal":"AKID","requestId":"r","source":"cli"}"#)
        let image = ImageRecord(
            imageDigest: "sha256:cd", imageManifest: "{}", imageManifestMediaType: "m", artifactMediaType: nil,
            imageSizeInBytes: 2, pushedAt: Timestamp(millisecondsSinceEpoch: 0))
        #expect(!image.json.text.contains("artifactMediaType"))
        #expect(RepositoryDetails().json.text.contains(#""architectures":[]"#))
    }
}
