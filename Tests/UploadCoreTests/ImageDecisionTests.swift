import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// The image rules (ImageDecisions) of ``DecisionRulesTests``, through the same ``Harness``.
extension DecisionRulesTests {
    // MARK: PutImage

    @Test func put_sameDigestAndTagAgain_isImageAlreadyExists_butANewTagIsAccepted() throws {
        var w = try Harness()
        try w.withLayers()
        let manifest = Fixture.image(config: c, layers: [a])
        try w.run(.put(manifest, tag: "v1"))
        #expect(try w.refusal(.put(manifest, tag: "v1")).code == .imageAlreadyExists)
        #expect(try w.refusal(.put(manifest)).code == .imageAlreadyExists)
        guard case .imagePushed(let e)? = try w.run(.put(manifest, tag: "v2")).events.first else {
            Issue.record("no ImagePushed"); return
        }
        #expect(e.imageTag == "v2")
        #expect(try w.tables.tags(of: e.imageDigest, in: w.ref) == ["v1", "v2"])
    }

    /// A manifest stored before a push rule refused it (here a trailing comma, stored as replay
    /// stores it) can still be tagged by pushing its bytes again, where it is stored; anywhere
    /// else it is refused, and before its missing blobs are named.
    @Test func put_aManifestStoredBeforeARule_canBeTaggedWhereItIs_butIsRefusedAnywhereElse() throws {
        var w = try Harness(repositories: ["team/app", "team/other"])
        try w.withLayers()
        let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],}"#
        let digest = Fixture.imageDigest(manifest)
        let put = try PutImage(repositoryName: "team/app", imageManifest: manifest, imageTag: "v1")
        #expect(put.refusalUnlessStored?.code == .invalidParameter)
        #expect(try w.refusal(.putImage(put)) == put.refusalUnlessStored)
        w.position += 1
        try Projector.apply(EventEnvelope(position: w.position, recordedAt: w.now, metadata: testMetadata(), event: .imagePushed(ImagePushed(
            registryId: testRegistryId, repositoryName: "team/app", imageDigest: digest, imageTag: "v1", imageManifest: manifest,
            imageManifestMediaType: "application/vnd.oci.image.index.v1+json", artifactMediaType: nil, imageSizeInBytes: 0, pushedAt: w.now))),
            to: &w.tables)

        #expect(try w.refusal(.put(manifest, tag: "v1")).code == .imageAlreadyExists)
        try w.run(.put(manifest, tag: "v2"))
        #expect(try w.tables.tags(of: digest, in: w.ref) == ["v1", "v2"])
        let elsewhere = try PutImage(repositoryName: "team/other", imageManifest: manifest, imageTag: "v1")
        #expect(try w.refusal(.putImage(elsewhere)).code == .invalidParameter)
        #expect(elsewhere.refusalInAnEmptyRepository?.code == .invalidParameter)
        // Before the blobs it names are looked for: a new push is refused for its text first.
        let naming = String(Fixture.image(config: d, layers: [d]).dropLast(2)) + "],}"
        #expect(try w.refusal(.put(naming)).code == .invalidParameter)
    }

    /// A claimed digest must be the manifest's (in any case); the size is the layers' without the config.
    @Test func put_checksTheClaimedDigest_andRecordsTheSumOfLayerSizes() throws {
        var w = try Harness()
        try w.withLayers()
        let manifest = Fixture.image(config: c, layers: [a, b])
        let digest = Fixture.imageDigest(manifest)
        #expect(try w.refusal(.put(manifest, tag: "v1", digest: d)).code == .imageDigestDoesNotMatch)
        let decision = try w.run(.put(manifest, tag: "v1", digest: digest.uppercased()))
        #expect(decision.events == [.imagePushed(ImagePushed(
            registryId: testRegistryId, repositoryName: "team/app", imageDigest: digest, imageTag: "v1", imageManifest: manifest,
            imageManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
            artifactMediaType: "application/vnd.oci.image.config.v1+json", imageSizeInBytes: 30, pushedAt: w.now))])
    }

    /// Missing blobs are LayersNotFound (each listed once, config first); missing images ReferencedImagesNotFound.
    @Test func put_referencingWhatTheRepositoryLacks_listsWhatIsMissing() throws {
        var w = try Harness()
        try w.layer(a, size: 10)
        let layers = try w.refusal(.put(Fixture.image(config: c, layers: [a, b, b])))
        #expect(layers.code == .layersNotFound)
        #expect(layers.message.hasSuffix(": \(c), \(b)"))
        try w.layer(c, size: 7)
        let manifest = Fixture.image(config: c, layers: [a])
        try w.run(.put(manifest))
        let present = Fixture.imageDigest(manifest)
        let error = try w.refusal(.put(Fixture.index([present, d])))
        #expect(error.code == .referencedImagesNotFound)
        #expect(error.message.hasSuffix(": \(d)"))
        #expect(try w.decide(.put(Fixture.index([present]), tag: "multi")).events.count == 1)
    }

    /// The same bytes sent again as another media type (possible only for a manifest without
    /// `mediaType`) are the image stored before: a new tag's event names the stored type, which
    /// every pull of that tag is served with, not the type sent.
    @Test func put_storedBytesAsAnotherType_recordTheStoredType() throws {
        var w = try Harness()
        try w.withLayers()
        let typeless = #"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":7},"layers":[]}"#
        let docker = "application/vnd.docker.distribution.manifest.v2+json", oci = "application/vnd.oci.image.manifest.v1+json"
        func put(as type: String, tag: String) throws -> Command {
            .putImage(try PutImage(repositoryName: "team/app", imageManifest: typeless, imageManifestMediaType: type, imageTag: tag))
        }
        try w.run(put(as: docker, tag: "first"))
        guard case .imagePushed(let retagged)? = try w.run(put(as: oci, tag: "second")).events.first else {
            Issue.record("no ImagePushed"); return
        }
        #expect(retagged.imageManifestMediaType == docker)
        #expect(try w.tables.image(w.ref, retagged.imageDigest)?.imageManifestMediaType == docker)
    }

    /// Deciding a manifest that names thousands of missing blobs (25,000 fit in one) takes time in
    /// proportion to them, not to their square: the decision holds the writer, and every other
    /// caller's write waits for it (16,000 took 5.3 s of a debug build when each was looked for
    /// in the list of those missing so far). Eight times the blobs may take eight times as long,
    /// and here no more than 32 times (the square would be 64; the old code took 59 times). Each
    /// size is timed five times, the two in turn so that a burst of other tests' work meets both,
    /// and the fastest of each is compared.
    @Test func put_manyMissingBlobs_isDecidedInTimeInProportionToThem() throws {
        let w = try Harness()
        func refusal(of count: Int) throws -> () throws -> Void {
            let digests = (0..<count).map { "sha256:" + String(repeating: "0", count: 64 - String($0, radix: 16).count) + String($0, radix: 16) }
            let command: Command = try .put(Fixture.image(config: c, layers: digests))
            return {
                let refusal = try w.refusal(command)
                #expect(refusal.code == .layersNotFound && refusal.message.hasSuffix(digests[count - 1]))
            }
        }
        let (few, many) = try GrowthTiming.fastest(small: try refusal(of: 1_000), large: try refusal(of: 8_000))
        #expect(many < few * 32, "1,000 missing blobs in \(few), 8,000 in \(many)")
    }

    /// A blob or an index's manifest named at a size it does not have is refused where the
    /// manifest would be stored anew, after any missing one is named; an image stored before this
    /// rule can still be tagged.
    @Test func put_aBlobAtAnotherSize_isRefused_unlessTheImageIsStored() throws {
        var w = try Harness()
        try w.withLayers()
        let misstated = Fixture.image(config: c, layers: [a, b], sizes: [a: 10, b: 21, c: 7])
        let refusal = try w.refusal(.put(misstated, tag: "v1"))
        #expect(refusal.code == .invalidParameter)
        #expect(refusal.message == "The imageManifest gives the blob '\(b)' a size of 21 bytes, but the repository with name 'team/app' holds it with 20 bytes.")
        #expect(try w.refusal(.put(Fixture.image(config: c, layers: [b, d], sizes: [b: 21, c: 7]))).code == .layersNotFound)
        let configMisstated = try w.refusal(.put(Fixture.image(config: c, layers: [a], sizes: [a: 10, c: 8])))
        #expect(configMisstated.message.contains("'\(c)' a size of 8 bytes"), "the config's size is checked too")
        // An index's entries too: a manifest's size is its bytes'.
        let child = Fixture.image(config: c, layers: [a]), childDigest = Fixture.imageDigest(child)
        try w.run(.put(child))
        let listMisstated = try w.refusal(.put(Fixture.index([childDigest], sizes: [childDigest: 5])))
        #expect(listMisstated.code == .invalidParameter)
        #expect(listMisstated.message.contains("gives the manifest '\(childDigest)' a size of 5 bytes") && listMisstated.message.hasSuffix("holds it with \(child.utf8.count) bytes."))
        #expect(try w.decide(.put(Fixture.index([childDigest]))).events.count == 1)
        // Stored before the rule, as replay stores it: pushed again with a new tag, it is tagged.
        w.position += 1
        try Projector.apply(EventEnvelope(position: w.position, recordedAt: w.now, metadata: testMetadata(), event: .imagePushed(ImagePushed(
            registryId: testRegistryId, repositoryName: "team/app", imageDigest: Fixture.imageDigest(misstated), imageTag: "v1",
            imageManifest: misstated, imageManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
            artifactMediaType: "application/vnd.oci.image.config.v1+json", imageSizeInBytes: 30, pushedAt: w.now))),
            to: &w.tables)
        #expect(try w.decide(.put(misstated, tag: "v2")).events.count == 1)
    }

    // MARK: BatchDeleteImage

    @Test func delete_byDigest_deletesTheImageAndItsTags() throws {
        var w = try Harness()
        let (x, _) = try w.images()
        let decision = try w.run(.delete([ImageIdentifier(imageDigest: x.uppercased())]))
        #expect(decision.events == [.imageDeleted(ImageDeleted(registryId: testRegistryId, repositoryName: "team/app", imageDigest: x))])
        #expect(decision.imageIds == [ImageIdentifier(imageDigest: x)] && decision.imageFailures.isEmpty)
        #expect(try w.tables.image(w.ref, x) == nil)
        #expect(try w.tables.tag(w.ref, "v1") == nil)
    }

    @Test func delete_byTag_untags_andDeletesWithTheLastTag() throws {
        var w = try Harness()
        let (x, _) = try w.images()
        let first = try w.run(.delete([ImageIdentifier(imageTag: "v1")]))
        #expect(first.events == [.imageUntagged(ImageUntagged(registryId: testRegistryId, repositoryName: "team/app", imageDigest: x, imageTag: "v1"))])
        #expect(first.imageIds == [ImageIdentifier(imageDigest: x, imageTag: "v1")])
        #expect(try w.tables.tags(of: x, in: w.ref) == ["v2"])
        let last = try w.run(.delete([ImageIdentifier(imageDigest: x, imageTag: "v2")]))
        #expect(last.events.map(\.type) == [.imageUntagged, .imageDeleted])
        #expect(try w.tables.image(w.ref, x) == nil)
    }

    /// Refusals of one id are failures in the answer, not errors; "y" stands for the untagged image's digest.
    @Test(arguments: [
        ("y", "v1", .imageTagDoesNotMatchDigest), ("sha256:" + String(repeating: "d", count: 64), nil, .imageNotFound),
        (nil, "v9", .imageNotFound), ("sha256:xyz", nil, .invalidImageDigest),
        (nil, nil, .missingDigestAndTag),
    ] as [(String?, String?, ImageFailure.Code)])
    func delete_refusedIds_areFailures(digest: String?, tag: String?, code: ImageFailure.Code) throws {
        var w = try Harness()
        let (_, y) = try w.images()
        let id = ImageIdentifier(imageDigest: digest == "y" ? y : digest, imageTag: tag)
        let decision = try w.decide(.delete([id]))
        #expect(decision.events.isEmpty && decision.imageIds.isEmpty)
        #expect(decision.imageFailures.map(\.failureCode) == [code])
        #expect(decision.imageFailures.first?.imageId == id)
    }

    /// Each id is decided against what the ones before it left ("x" is image x's digest; others are tags).
    @Test(arguments: [
        (["x", "x"], [.imageDeleted], [.imageNotFound]), (["v1", "v1"], [.imageUntagged], [.imageNotFound]),
        (["x", "v1"], [.imageDeleted], [.imageNotFound]), (["v1", "x"], [.imageUntagged, .imageDeleted], []),
        (["v1", "v2"], [.imageUntagged, .imageUntagged, .imageDeleted], []),
    ] as [([String], [EventType], [ImageFailure.Code])])
    func delete_laterIds_seeWhatEarlierOnesLeft(ids: [String], events: [EventType], failures: [ImageFailure.Code]) throws {
        var w = try Harness()
        let (x, _) = try w.images()
        let request = ids.map { $0 == "x" ? ImageIdentifier(imageDigest: x) : ImageIdentifier(imageTag: $0) }
        let decision = try w.run(.delete(request))  // the projector accepts what was decided
        #expect(decision.events.map(\.type) == events)
        #expect(decision.imageFailures.map(\.failureCode) == failures)
        #expect(try (w.tables.image(w.ref, x) == nil) == events.contains(.imageDeleted))
    }
}
