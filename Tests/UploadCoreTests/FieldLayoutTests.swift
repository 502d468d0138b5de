import Testing
@testable import UploadCore
import UploadTesting

/// Locks the field layout of every event and projection record: each expected value is spelled
/// field by field with ``FieldWriter`` (tag, kind, order, what is left out), as the hand-written
/// encoders before `FieldRecord` wrote them and the event catalogue lists them. A declaration whose
/// properties are reordered, retagged or retyped fails here, before it changes a byte on disk.
struct FieldLayoutTests {
    static let at = Timestamp(millisecondsSinceEpoch: 1_796_083_200_123)
    static let (registry, name, upload, digest) = ("123456789012", "team/app", "0f8c1a2e-0000-4000-8000-000000000001", "sha256:" + String(repeating: "ab", count: 32))

    static func fields(_ write: (inout FieldWriter) -> Void) -> [UInt8] {
        var writer = FieldWriter()
        write(&writer)
        return writer.bytes
    }

    static let events: [(Event, [UInt8])] = [
        (.repositoryCreated(RepositoryCreated(registryId: registry, repositoryName: name, createdAt: at)),
         fields { $0.string(1, registry); $0.string(2, name); $0.timestamp(3, at) }),
        (.repositoryDeleted(RepositoryDeleted(registryId: registry, repositoryName: name, force: false, createdAt: nil)),
         fields { $0.string(1, registry); $0.string(2, name); $0.bool(3, false) }),
        (.repositoryDeleted(RepositoryDeleted(registryId: registry, repositoryName: name, force: true, createdAt: at)),
         fields { $0.string(1, registry); $0.string(2, name); $0.bool(3, true); $0.timestamp(4, at) }),
        (.uploadInitiated(UploadInitiated(uploadId: upload, partSize: 7, registryId: registry, repositoryName: name, initiatedAt: at)),
         fields { $0.string(1, upload); $0.uint(2, 7); $0.string(3, registry); $0.string(4, name); $0.timestamp(5, at) }),
        (.uploadAborted(UploadAborted(uploadId: upload, registryId: registry, repositoryName: name, reason: .repositoryDeleted)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.string(4, "repositoryDeleted") }),
        (.uploadExpired(UploadExpired(uploadId: upload, registryId: registry, repositoryName: name, lastActivityAt: at)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.timestamp(4, at) }),
        (.layerPartUploaded(LayerPartUploaded(uploadId: upload, registryId: registry, repositoryName: name, partFirstByte: 0, partLastByte: 9, partDigest: digest)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.uint(4, 0); $0.uint(5, 9); $0.string(6, digest) }),
        (.layerUploadCompleted(LayerUploadCompleted(uploadId: upload, registryId: registry, repositoryName: name, layerDigest: digest, layerSize: 10)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.string(4, digest); $0.uint(5, 10) }),
        (.imagePushed(ImagePushed(
            registryId: registry, repositoryName: name, imageDigest: digest, imageTag: "v1", imageManifest: "{}",
            imageManifestMediaType: "m", artifactMediaType: nil, imageSizeInBytes: 3, pushedAt: at)),
         fields {
             $0.string(1, registry); $0.string(2, name); $0.string(3, digest); $0.string(4, "v1"); $0.string(5, "{}")
             $0.string(6, "m"); $0.uint(8, 3); $0.timestamp(9, at)
         }),
        (.imageUntagged(ImageUntagged(registryId: registry, repositoryName: name, imageDigest: digest, imageTag: "v1")),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, digest); $0.string(4, "v1") }),
        (.imageDeleted(ImageDeleted(registryId: registry, repositoryName: name, imageDigest: digest)),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, digest) }),
        (.layerMounted(LayerMounted(registryId: registry, repositoryName: name, layerDigest: digest, layerSize: 10, fromRepositoryName: "team/base")),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, digest); $0.uint(4, 10); $0.string(5, "team/base") }),
        (.layerMounted(LayerMounted(registryId: registry, repositoryName: name, layerDigest: digest, layerSize: 10, fromRepositoryName: nil)),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, digest); $0.uint(4, 10) }),
        (.uploadAborted(UploadAborted(uploadId: upload, registryId: registry, repositoryName: name, reason: .cancelled)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.string(4, "cancelled") }),
        (.uploadAborted(UploadAborted(uploadId: upload, registryId: registry, repositoryName: name, reason: .layerAlreadyExists)),
         fields { $0.string(1, upload); $0.string(2, registry); $0.string(3, name); $0.string(4, "layerAlreadyExists") }),
        (.repositoryCatalogDataPut(RepositoryCatalogDataPut(
            registryId: registry, repositoryName: name, description: "d", architectures: ["ARM 64", "x86-64"], operatingSystems: [],
            logoImageDigest: digest, aboutText: nil, usageText: "u")),
         fields {
             $0.string(1, registry); $0.string(2, name); $0.string(3, "d"); $0.strings(4, ["ARM 64", "x86-64"])
             $0.string(6, digest); $0.string(8, "u")
         }),
        (.repositoryTagged(RepositoryTagged(registryId: registry, repositoryName: name, tagKeys: ["env", "team"], tagValues: ["prod", ""])),
         fields { $0.string(1, registry); $0.string(2, name); $0.strings(3, ["env", "team"]); $0.strings(4, ["prod", ""]) }),
        (.repositoryUntagged(RepositoryUntagged(registryId: registry, repositoryName: name, tagKeys: ["env"])),
         fields { $0.string(1, registry); $0.string(2, name); $0.strings(3, ["env"]) }),
        (.registryCatalogDataPut(RegistryCatalogDataPut(registryId: registry, displayName: "My registry")),
         fields { $0.string(1, registry); $0.string(2, "My registry") }),
        (.repositoryPolicySet(RepositoryPolicySet(registryId: registry, repositoryName: name, policyText: "{}")),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, "{}") }),
        (.repositoryPolicyDeleted(RepositoryPolicyDeleted(registryId: registry, repositoryName: name, policyText: "{}")),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, "{}") }),
        (.callAnswered(CallAnswered(registryId: registry, repositoryName: name, operation: "BatchDeleteImage", failureCodes: ["ImageNotFound", "InvalidImageDigest"])),
         fields { $0.string(1, registry); $0.string(2, name); $0.string(3, "BatchDeleteImage"); $0.strings(4, ["ImageNotFound", "InvalidImageDigest"]) }),
    ]

    @Test func everyEventType_hasALockedLayout() throws {
        #expect(Set(Self.events.map { $0.0.type }) == Set(EventType.allCases), "one case per event type")
        for (event, expected) in Self.events {
            var writer = FieldWriter()
            event.payload.encode(into: &writer)
            #expect(writer.bytes == expected, "\(event.type.name)")
            let decoded = try event.type.payloadType.init(decoding: FieldReader(expected), version: 1).event
            #expect(decoded == event, "\(event.type.name) reads its own layout back")
        }
    }

    @Test func everyProjectionRecord_hasALockedLayout() throws {
        var session = UploadSession(
            uploadId: Self.upload, registryId: Self.registry, repositoryName: Self.name, partSize: 7, state: .active,
            initiatedAt: Self.at, initiatedPosition: 2, lastActivityAt: Self.at, lastPosition: 3)
        session.bytesReceived = 10
        session.partCount = 1
        session.lastPart = .init(firstByte: 0, lastByte: 9, digest: Self.digest)
        let sessionBytes = Self.fields {
            $0.string(1, Self.upload); $0.string(2, Self.registry); $0.string(3, Self.name); $0.uint(4, 7); $0.string(5, "active")
            $0.timestamp(6, Self.at); $0.uint(7, 2); $0.timestamp(8, Self.at); $0.uint(9, 3); $0.uint(10, 10); $0.uint(11, 1)
            $0.uint(12, 0); $0.uint(13, 9); $0.string(14, Self.digest); $0.bool(15, false)
        }
        #expect(session.encoded() == sessionBytes)
        #expect(try UploadSession(decoding: sessionBytes) == session)

        let summary = RepositorySummary(
            registryId: Self.registry, repositoryName: Self.name, createdAt: Self.at, createdPosition: 1, uploadsInitiated: 2,
            activeSessions: 1, lastActivityAt: Self.at, lastPosition: 3, layerCount: 4, imageCount: 5)
        #expect(summary.encoded() == Self.fields {
            $0.string(1, Self.registry); $0.string(2, Self.name); $0.timestamp(3, Self.at); $0.uint(4, 1); $0.uint(5, 2)
            $0.uint(6, 1); $0.timestamp(7, Self.at); $0.uint(8, 3); $0.uint(9, 4); $0.uint(10, 5)
        })
        #expect(LayerRecord(layerDigest: Self.digest, layerSize: 10, uploadId: Self.upload, completedAt: Self.at).encoded() == Self.fields {
            $0.string(1, Self.digest); $0.uint(2, 10); $0.string(3, Self.upload); $0.timestamp(4, Self.at)
        })
        #expect(LayerRecord(layerDigest: Self.digest, layerSize: 10, uploadId: Self.upload, completedAt: Self.at, mediaType: "m").encoded() == Self.fields {
            $0.string(1, Self.digest); $0.uint(2, 10); $0.string(3, Self.upload); $0.timestamp(4, Self.at); $0.string(5, "m")
        })
        var details = RepositoryDetails()
        details.description = "d"
        details.put(tags: [("team", "x"), ("env", "")])
        details.policyText = "{}"
        #expect(details.encoded() == Self.fields { $0.string(1, "d"); $0.strings(7, ["env", "team"]); $0.strings(8, ["", "x"]); $0.string(9, "{}") })
        #expect(RegistryCatalog(displayName: "n").encoded() == Self.fields { $0.string(1, "n") })
        let image = ImageRecord(
            imageDigest: Self.digest, imageManifest: "{}", imageManifestMediaType: "m", artifactMediaType: "a",
            imageSizeInBytes: 3, pushedAt: Self.at)
        #expect(image.encoded() == Self.fields {
            $0.string(1, Self.digest); $0.string(2, "{}"); $0.string(3, "m"); $0.string(4, "a"); $0.uint(5, 3)
            $0.timestamp(6, Self.at)
        })
        #expect(throws: CodecError.self, "layout 9's tags (7) and referencedBy (8) are no field of layout 10's") {
            try ImageRecord(decoding: image.encoded() + Self.fields { $0.strings(7, ["v1"]) })
        }
        var untagged = image
        untagged.artifactMediaType = nil
        #expect(untagged.encoded() == Self.fields {
            $0.string(1, Self.digest); $0.string(2, "{}"); $0.string(3, "m"); $0.uint(5, 3); $0.timestamp(6, Self.at)
        }, "an absent media type is left out")
        #expect(try ImageRecord(decoding: untagged.encoded()) == untagged)
        #expect(TagRecord(imageDigest: Self.digest, createdAt: Self.at).encoded() == Self.fields {
            $0.string(1, Self.digest); $0.timestamp(2, Self.at)
        })
        let mark = InvocationMark(invocationId: "i", requestId: "r", recordedAt: Self.at)
        #expect(mark.encoded() == Self.fields { $0.string(1, "i"); $0.string(2, "r"); $0.timestamp(3, Self.at) })
        #expect(try InvocationMark(decoding: mark.encoded()) == mark)
        let metadata = RequestMetadata(requestId: "r", source: "http", principal: "AKID", requestDigest: "d")
        #expect(metadata.encoded() == Self.fields { $0.string(1, "r"); $0.string(2, "http"); $0.string(5, "AKID"); $0.string(7, "d") })
    }
}
