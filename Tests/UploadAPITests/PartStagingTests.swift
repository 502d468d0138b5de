import ECRRequests
import Foundation
import Logging
import Testing
import UploadCore
import UploadService
import UploadStore
import UploadTesting

/// A part's bytes are staged as they decode. When the base64 turns out malformed part way, what
/// was already written is cut back: staging holds only what the log records, nothing is recorded,
/// and the upload takes the part again.
struct PartStagingTests {
    @Test func malformedBase64FoundPartWay_cutsStagingBack_recordsNothing_andTheUploadGoesOn() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let uploadId = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            let bytes = [UInt8](repeating: 7, count: 200_000)
            let placement = try UploadLayerPart.Placement(
                repositoryName: "team/app", uploadId: uploadId, partFirstByte: 0, partLastByte: Int64(bytes.count - 1))
            var text = Array(Data(bytes).base64EncodedString().utf8)
            let good = text
            text[150_000] = UInt8(ascii: "*")
            let before = try store.read { try $0.lastPosition() }

            await #expect {
                _ = try await service.uploadLayerPart(placement, bytes: try Base64Part(text[...]), testMetadata())
            } throws: { ($0 as? CommandError)?.code == .invalidParameter }
            let staged = (try? FileManager.default.attributesOfItem(atPath: blobs.stagingPath(uploadId))[.size] as? Int) ?? 0
            #expect(staged == 0, "the chunks decoded before the bad character were written, then cut back")
            #expect(try store.read { try $0.lastPosition() } == before, "nothing recorded")

            let accepted = try await service.uploadLayerPart(placement, bytes: try Base64Part(good[...]), testMetadata())
            #expect(accepted.lastByteReceived == UInt64(bytes.count - 1))
            #expect(try store.read { try $0.session(uploadId) }?.bytesReceived == UInt64(bytes.count))
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(uploadId)))) == bytes)
        }
    }
}
