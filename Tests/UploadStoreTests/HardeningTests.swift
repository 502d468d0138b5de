import Foundation
import LMDBKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

/// What a hostile caller could do to the store before the hardening issue: trap an arithmetic
/// overflow, fail other callers' writes, store nothing under a valid but long key, or get another
/// call's answer by reusing its invocation id.
struct HardeningTests {
    static let name = "team/app"

    static func create(_ name: String) throws -> Command { .createRepository(try CreateRepository(repositoryName: name)) }

    @Test func events_afterTheLargestPosition_isEmpty_notATrap() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create(Self.name), metadata: testMetadata())
            #expect(try store.read { try $0.events(after: .max) }.isEmpty)
            #expect(try store.read { try $0.events(after: .max - 1) }.isEmpty)
            #expect(try store.read { try $0.events(after: 0) }.count == 1)
        }
    }

    /// A repository whose record no longer decodes poisons every command on it. Those commands
    /// must fail alone, with their own error, while every honest command batched with them commits.
    @Test func aCommandTheStoreCannotWrite_failsAlone_andItsBatchCommits() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create(Self.name), metadata: testMetadata())
            _ = try await store.execute(try Self.create("team/poisoned"), metadata: testMetadata())
        }
        do {
            let env = try Environment(directory: dir.path + "/projections")
            try env.write { txn in
                let repositories = try #require(try txn.openDatabase(ProjectionTable.repositories.rawValue))
                try txn.put(repositories, Array("\(testRegistryId)/team/poisoned".utf8), [0xFF, 0xFF, 0xFF])
            }
        }
        let honest = 64, poisoned = 8, rounds = 5
        try await withTestStore(dir) { store in
            for round in 0..<rounds {
                let outcomes = await withTaskGroup(of: (Bool, Result<Void, any Error>).self) { group in
                    for i in 0..<(honest + poisoned) {
                        let isPoisoned = i % ((honest + poisoned) / poisoned) == 0
                        group.addTask {
                            do {
                                let name = isPoisoned ? "team/poisoned" : Self.name
                                _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: name), metadata: testMetadata("r\(round)-\(i)"))
                                return (isPoisoned, .success(()))
                            } catch {
                                return (isPoisoned, .failure(error))
                            }
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                for (isPoisoned, outcome) in outcomes {
                    if isPoisoned {
                        guard case .failure(let error) = outcome else { Issue.record("a poisoned command succeeded"); continue }
                        #expect((error as? StoreError)?.code == .corrupt, "its own error: \(error)")
                    } else if case .failure(let error) = outcome {
                        Issue.record("an honest command failed with \(error)")
                    }
                }
            }
            let initiated = try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: Self.name))?.uploadsInitiated }
            #expect(initiated == UInt64(honest * rounds))
            let stats = store.writerStatistics
            #expect(stats.largestBatch > 1, "commands were batched")
        }
    }

    /// The model allows a 300-character tag on a 205-character repository name; its keys must fit
    /// LMDB's 511 bytes, and the image must be found again by that tag. The longest tag on the
    /// longest name kept plain (its key with the registry's: 74 bytes), the
    /// shortest name hashed, and the longest name: each image's tag is keyed by the prefix, the
    /// digest and the tag (`tags-by-image`), which must fit LMDB's 511 bytes too.
    @Test(arguments: [61, 62, 125, 205])
    func theLongestTag_onALongRepositoryName_isStored_andFound(nameLength: Int) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let longName = Self.name(ofLength: nameLength)
        #expect(ProjectionKey.repository(RepositoryRef(registryId: testRegistryId, repositoryName: longName)).count == nameLength + 13)
        let tag = String(repeating: "t", count: 300)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: longName)
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create(longName), metadata: testMetadata())
            let config = try await Self.completedLayer(store, dir, longName, Array("{}".utf8))
            let layer = try await Self.completedLayer(store, dir, longName, Array("layer".utf8))
            let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(config)","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(layer)","size":5}]}"#
            let put = try PutImage(repositoryName: longName, imageManifest: manifest, imageTag: tag)
            _ = try await store.execute(.putImage(put), metadata: testMetadata())
            #expect(try store.read { try $0.tag(ref, tag)?.imageDigest } == put.imageDigest)
            let tags = try store.read { try $0.tags(in: ref, after: nil, limit: 10) }
            #expect(tags.map(\.name) == [tag])
            #expect(try store.read { try $0.tags(of: put.imageDigest, in: ref) } == [tag])
            #expect(try store.read { try $0.imageTags(in: ref, from: put.imageDigest, through: put.imageDigest) }.map(\.tag) == [tag])
            let delete = try BatchDeleteImage(repositoryName: longName, imageIds: [ImageIdentifier(imageTag: tag)])
            let outcome = try await store.execute(.batchDeleteImage(delete), metadata: testMetadata())
            #expect(outcome.decision.imageIds == [ImageIdentifier(imageDigest: put.imageDigest, imageTag: tag)])
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// A repository name of `length` characters: one segment up to 100, two past it.
    static func name(ofLength length: Int) -> String {
        length <= 100 ? String(repeating: "a", count: length) : String(repeating: "a", count: 60) + "/" + String(repeating: "b", count: length - 61)
    }

    /// Logs from before PutImage took SHA-256 alone may hold a SHA-512 image with a tag of 300, on
    /// a name of any length: every key its projections make (which an upgraded store's rebuild
    /// writes) fits LMDB's 511 bytes. Layout 11 kept names up to 125 characters plain, and such a
    /// tag's key then took up to 575.
    @Test(arguments: [61, 62, 125, 205])
    func aSha512ImageOfAnOlderLog_withTheLongestTag_makesOnlyKeysLMDBHolds(nameLength: Int) throws {
        let name = Self.name(ofLength: nameLength)
        let image = "sha512:" + String(repeating: "e", count: 128), list = "sha512:" + String(repeating: "f", count: 128)
        let tag = String(repeating: "t", count: 300)
        let at = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
        func pushed(_ digest: String, _ manifest: String, _ mediaType: String) -> Event {
            .imagePushed(ImagePushed(
                registryId: testRegistryId, repositoryName: name, imageDigest: digest, imageTag: tag, imageManifest: manifest,
                imageManifestMediaType: mediaType, artifactMediaType: nil, imageSizeInBytes: 2, pushedAt: at))
        }
        let index = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(image)","size":2}]}"#
        let events: [Event] = [
            .repositoryCreated(RepositoryCreated(registryId: testRegistryId, repositoryName: name, createdAt: at)),
            pushed(image, "{}", "application/vnd.oci.image.manifest.v1+json"),
            pushed(list, index, "application/vnd.oci.image.index.v1+json"),  // the tag moves to the list
        ]
        var state = InMemoryProjectionState()
        for (offset, event) in events.enumerated() {
            try Projector.apply(EventEnvelope(position: UInt64(offset + 1), recordedAt: at, metadata: testMetadata(), event: event), to: &state)
        }
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: name)
        #expect(state.tags(of: list, in: ref) == [tag] && state.manifestLists(naming: image, in: ref) == [list])
        for table in ProjectionTable.allCases {
            for entry in state.entries(table) {
                #expect(entry.key.count <= Transaction.maximumKeySize, "\(table.rawValue): a key of \(entry.key.count) bytes")
            }
        }
    }

    /// A look-up by a key LMDB could never hold finds nothing (before, it failed the batch).
    @Test func aLookupLongerThanAnyKey_findsNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(try Self.create(Self.name), metadata: testMetadata())
            let ref = RepositoryRef(registryId: testRegistryId, repositoryName: Self.name)
            let digest = "sha256:" + String(repeating: "a", count: 2000)
            #expect(try store.read { try $0.image(ref, digest) } == nil)
            let delete = try BatchDeleteImage(repositoryName: Self.name, imageIds: [ImageIdentifier(imageDigest: digest)])
            let outcome = try await store.execute(.batchDeleteImage(delete), metadata: testMetadata())
            #expect(outcome.decision.imageFailures.map(\.failureCode) == [.imageNotFound])
            let page = try store.read { try $0.repositories(in: testRegistryId, after: String(repeating: "z", count: 600), limit: 10) }
            #expect(page.isEmpty, "a start past every key")
        }
    }

    /// A retry is the same call: same operation (command kind), principal and request digest.
    /// Another request that reuses the id is refused, writes nothing, and learns nothing.
    @Test func aReusedInvocationId_withAnotherRequest_isRefused_andWritesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        func metadata(_ digest: String, principal: String = "AKIA1") -> RequestMetadata {
            RequestMetadata(requestId: UUID().uuidString, source: "test", principal: principal, invocationId: "inv-1", requestDigest: digest)
        }
        try await withTestStore(dir) { store in
            let first = try await store.execute(try Self.create("team/c1"), metadata: metadata("d1"))
            let retry = try await store.execute(try Self.create("team/c1"), metadata: metadata("d1"))
            #expect(retry.isRetry && retry.events == first.events, "the same call is answered as before")
            let before = try store.read { try $0.lastPosition() }
            for (command, meta) in [
                (try Self.create("team/c2"), metadata("d2")),                 // another body
                (try Self.create("team/c1"), metadata("d1", principal: "AKIA2")),  // another principal
                (Command.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/c1")), metadata("d1")),  // another operation
            ] {
                await #expect {
                    _ = try await store.execute(command, metadata: meta)
                } throws: { ($0 as? CommandError)?.code == .idempotentParameterMismatch }
            }
            #expect(try store.read { try $0.lastPosition() } == before, "nothing written")
            #expect(try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/c2")) } == nil)
        }
    }

    /// Stages `bytes` as one part of a new upload in `name` and completes it. - Returns: its digest.
    static func completedLayer(_ store: Store, _ dir: TemporaryDirectory, _ name: String, _ bytes: [UInt8]) async throws -> String {
        let blobs = try BlobStore(directory: dir.path)
        let id = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: name), metadata: testMetadata()).uploadId
        try blobs.writePart(uploadId: id, offset: 0, bytes: bytes)
        var part = try UploadLayerPart(
            repositoryName: name, uploadId: id, partFirstByte: 0, partLastByte: Int64(bytes.count - 1), partLength: UInt64(bytes.count), partDigest: "sha256:00")
        part.staged = true  // its bytes are staged by hand above
        _ = try await store.execute(.uploadLayerPart(part), metadata: testMetadata())
        let (digest, temporary) = try blobs.hashAndCopyStaged(uploadId: id, length: UInt64(bytes.count))
        var complete = try CompleteLayerUpload(repositoryName: name, uploadId: id, layerDigests: [digest])
        complete.staged = .init(digest: digest, size: UInt64(bytes.count))
        _ = try await store.execute(.completeLayerUpload(complete), metadata: testMetadata())
        try blobs.commitBlob(temporary, digest: digest)
        return digest
    }
}
