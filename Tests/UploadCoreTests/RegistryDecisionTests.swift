import Crypto
import Foundation
import LogHashing
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// What a registry client's commands decide (the OCI distribution front end): the same commands as
/// ECR's, under the registry's part rules, and cancel, mount and delete by tag.
struct RegistryDecisionTests {
    let a = Fixture.digest("a"), b = Fixture.digest("b")

    func upload(_ id: String, in repository: String = "team/app") -> RepositoryUpload {
        RepositoryUpload(RepositoryRef(registryId: testRegistryId, repositoryName: repository), uploadId: id)
    }

    func chunk(_ id: String, at offset: UInt64, length: UInt64) -> Command {
        var part = UploadLayerPart(.init(registryChunkOf: upload(id), at: offset, length: length), partLength: length, partDigest: "sha256:\(offset)")
        part.staged = true
        return .uploadLayerPart(part)
    }

    func completion(_ id: String, _ digest: String, size: UInt64) -> Command {
        var complete = CompleteLayerUpload(registryUpload: upload(id), digest: digest)
        complete.staged = .init(digest: digest, size: size)
        return .completeLayerUpload(complete)
    }

    /// ECR's bounds (a 20 MiB part, 5 MiB for every part but the last, at least one part, at most
    /// `maximumParts`) hold for UploadLayerPart only.
    @Test func registryChunks_mayHaveAnySize_andAnyCount() throws {
        var w = try Harness()
        w.settings.maximumParts = 2
        let id = try w.start()
        let big = UploadLayerPart.maximumPartBytes + 1
        #expect(try w.refusal(.part(id, 0, Int64(big) - 1)).code == .invalidLayerPart, "ECR's maximum")
        try w.run(chunk(id, at: 0, length: big))
        try w.run(chunk(id, at: big, length: 1))
        try w.run(chunk(id, at: big + 1, length: 1))  // past maximumParts, and a small non-final part
        #expect(try w.refusal(.part(id, Int64(big) + 2, Int64(big) + 2)).code == .limitExceeded, "ECR's part count")
        #expect(try w.refusal(.complete(id, [a], staged: .init(digest: a, size: big + 2))).code == .layerPartTooSmall)
        let done = try w.run(completion(id, a, size: big + 2))
        #expect(done.events.map(\.type) == [.layerUploadCompleted])
        #expect(try w.tables.layer(w.ref, a)?.layerSize == big + 2)
    }

    /// Each chunk is an event: a client may not fill the log by sending a layer a byte at a time.
    /// The upload still completes at the cap, and `expects` (checked before any bytes are staged)
    /// agrees with the decider.
    @Test func registryChunks_stopAtTheirCap_andTheUploadStillCompletes() throws {
        var w = try Harness()
        w.settings.maximumRegistryChunks = 2
        let id = try w.start()
        try w.run(chunk(id, at: 0, length: 1))
        try w.run(chunk(id, at: 1, length: 1))
        let session = try #require(try w.tables.session(id))
        #expect(!session.expects(UploadLayerPart.Placement(registryChunkOf: upload(id), at: 2, length: 1), length: 1, in: w.ref, settings: w.settings))
        #expect(try w.refusal(chunk(id, at: 2, length: 1)).code == .invalidLayerPart)
        let done = try w.run(completion(id, a, size: 2))
        #expect(done.events.map(\.type) == [.layerUploadCompleted])
    }

    @Test func anEmptyBlob_completesUnderTheRegistryRules_only() throws {
        var w = try Harness()
        let id = try w.start()
        let empty = Hex.sha256Digest([])
        #expect(try w.refusal(.complete(id, [empty], staged: .init(digest: empty, size: 0))).code == .emptyUpload)
        try w.run(completion(id, empty, size: 0))
        #expect(try w.tables.layer(w.ref, empty)?.layerSize == 0)
        #expect(try w.session(id).state == .completed)
    }

    /// A registry client pushes a blob the repository holds as if it were new: its upload ends
    /// (UploadAborted, layerAlreadyExists) and the layer stays as it was. ECR refuses.
    @Test func pushingAHeldLayerAgain_endsTheUpload_orIsRefusedUnderECRRules() throws {
        var w = try Harness()
        let first = try w.layer(a, size: 10)
        let again = try w.start()
        try w.run(.part(again, 0, 9))
        #expect(try w.refusal(.complete(again, [a], staged: .init(digest: a, size: 10))).code == .layerAlreadyExists)
        let decision = try w.run(completion(again, a, size: 10))
        #expect(decision.events == [.uploadAborted(UploadAborted(
            uploadId: again, registryId: testRegistryId, repositoryName: "team/app", reason: .layerAlreadyExists))])
        #expect(try w.session(again).state == .aborted)
        #expect(try w.tables.layer(w.ref, a)?.uploadId == first, "the layer stays as it was")
        #expect(try w.tables.repository(w.ref)?.activeSessions == 0)
    }

    @Test func aCompletionNamingAnotherDigest_isRefused_whateverTheRules() throws {
        var w = try Harness()
        let id = try w.start()
        try w.run(chunk(id, at: 0, length: 10))
        var complete = CompleteLayerUpload(registryUpload: upload(id), digest: b)
        complete.staged = .init(digest: a, size: 10)
        #expect(try w.refusal(.completeLayerUpload(complete)).code == .invalidLayer)
        #expect(try w.session(id).state == .active)
    }

    @Test func cancel_abortsAnActiveUpload_andNothingElse() throws {
        var w = try Harness(repositories: ["team/app", "team/other"])
        let id = try w.start()
        let elsewhere = try w.start(in: "team/other")
        #expect(try w.refusal(.cancelLayerUpload(CancelLayerUpload(upload(elsewhere)))).code == .uploadNotFound, "another repository's upload")
        let decision = try w.run(.cancelLayerUpload(CancelLayerUpload(upload(id))))
        #expect(decision.events == [.uploadAborted(UploadAborted(uploadId: id, registryId: testRegistryId, repositoryName: "team/app", reason: .cancelled))])
        #expect(try w.session(id).state == .aborted)
        #expect(try w.refusal(.cancelLayerUpload(CancelLayerUpload(upload(id)))).code == .uploadNotFound, "once ended")
    }

    @Test func mount_fromARepository_recordsTheSourcesSize_once() throws {
        var w = try Harness(repositories: ["team/app", "team/base"])
        try w.layer(a, size: 42, in: "team/base")
        let target = w.ref
        let mount = Command.mountLayer(MountLayer(into: target, layerDigest: a, from: .repository("team/base")))
        let decision = try w.run(mount)
        #expect(decision.events == [.layerMounted(LayerMounted(
            registryId: testRegistryId, repositoryName: "team/app", layerDigest: a, layerSize: 42, fromRepositoryName: "team/base"))])
        #expect(try w.tables.layer(target, a)?.layerSize == 42)
        #expect(try w.tables.repository(target)?.layerCount == 1)
        #expect(try w.run(mount).events.isEmpty, "already there: nothing to record")
        // A manifest may now name it, at its size.
        try w.run(Command.mountLayer(MountLayer(into: target, layerDigest: b, from: .blobStore(size: 7))))
        try w.run(try .put(Fixture.image(config: b, layers: [a], sizes: [a: 42, b: 7])))
    }

    @Test func mount_ofALayerItsSourceLacks_isLayersNotFound() throws {
        let w = try Harness(repositories: ["team/app", "team/base"])
        let fromBase = Command.mountLayer(MountLayer(into: w.ref, layerDigest: a, from: .repository("team/base")))
        #expect(try w.refusal(fromBase).code == .layersNotFound)
        let fromNowhere = Command.mountLayer(MountLayer(into: w.ref, layerDigest: a, from: .repository("team/none")))
        #expect(try w.refusal(fromNowhere).code == .layersNotFound)
        let intoNowhere = Command.mountLayer(MountLayer(
            into: RepositoryRef(registryId: testRegistryId, repositoryName: "team/none"), layerDigest: a, from: .blobStore(size: 1)))
        #expect(try w.refusal(intoNowhere).code == .repositoryNotFound)
    }

    /// A registry client's DELETE of a tag removes the tag only; ECR's BatchDeleteImage also
    /// deletes an image whose last tag goes.
    @Test func deletingTheLastTag_keepsTheImage_onlyWhenAsked() throws {
        var w = try Harness()
        let (x, _) = try w.images()
        var untagOnly = try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "v2")])
        untagOnly.keepsUntaggedImages = true
        #expect(try w.decide(.batchDeleteImage(untagOnly)).events.map(\.type) == [.imageUntagged, .imageUntagged])
        let ecr = try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "v2")])
        #expect(try w.decide(.batchDeleteImage(ecr)).events.map(\.type) == [.imageUntagged, .imageUntagged, .imageDeleted])
        try w.run(.batchDeleteImage(untagOnly))
        #expect(try w.tables.tags(of: x, in: w.ref) == [])
    }

    @Test func aManifestNamedBySHA512_isStoredUnderThatDigest_throughTheRegistryOnly() throws {
        var w = try Harness()
        try w.withLayers()
        let manifest = Fixture.image(config: Fixture.digest("c"), layers: [a])
        let sha512 = "sha512:" + Hex.encode(SHA512.hash(data: Array(manifest.utf8)))
        // ECR's PutImage names every image by SHA-256: the same manifest is not stored twice.
        #expect(try w.refusal(try .put(manifest, digest: sha512)).code == .imageDigestDoesNotMatch)
        try w.run(try .put(manifest, digest: sha512, throughTheRegistry: true))
        #expect(try w.tables.image(w.ref, sha512) != nil)
        let wrong = "sha512:" + String(repeating: "0", count: 128)
        #expect(try w.refusal(try .put(manifest, tag: "v9", digest: wrong, throughTheRegistry: true)).code == .imageDigestDoesNotMatch)
    }

    @Test func nonDistributableLayers_needNotBeInTheRepository() throws {
        var w = try Harness()
        try w.withLayers()
        let foreign = Fixture.digest("f")
        let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(Fixture.digest("c"))","size":7},"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"\#(foreign)","size":5,"urls":["https://example.com/f"]},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(a)","size":10}]}"#
        try w.run(try .put(manifest, tag: "foreign"))
        let missing = manifest.replacingOccurrences(of: "layer.nondistributable.v1.tar+gzip", with: "layer.v1.tar+gzip")
        #expect(try w.refusal(try .put(missing, tag: "other")).code == .layersNotFound, "a distributable layer must be there")
    }
}
