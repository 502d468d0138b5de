import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// Manifest lists' references, layers' media types, catalog data and tags, through ``Harness``.
extension DecisionRulesTests {
    /// team/app's ARN, as TagResource and UntagResource name it.
    var arn: String { "arn:aws:ecr-public::\(testRegistryId):repository/team/app" }

    // MARK: Sizes

    /// An artifact whose layer is the empty descriptor its config is too (oras's `{}`): the
    /// layer counts, as every layer does; the config alone does not.
    @Test func anImagesSize_isItsLayers_evenOneWithTheConfigsDigest() throws {
        var w = try Harness()
        try w.withLayers()
        let (a, c) = (Fixture.digest("a"), Fixture.digest("c"))
        for (manifest, size) in [(Fixture.image(config: c, layers: [c]), 7), (Fixture.image(config: c, layers: [a, c]), 17), (Fixture.image(config: c, layers: []), 0)] as [(String, UInt64)] {
            try w.run(.put(manifest))
            #expect(try w.tables.image(w.ref, Fixture.imageDigest(manifest))?.imageSizeInBytes == size, "\(manifest)")
        }
    }

    // MARK: Manifest lists

    /// x (size 10) and y (size 30) listed by an index: neither can be deleted while it stands, by
    /// digest or by its last tag; deleting the index first, in the same request, frees them.
    @Test func delete_ofAnImageAListNames_isRefused_untilTheListGoes() throws {
        var w = try Harness()
        let (x, y) = try w.images()
        let list = Fixture.index([y, x])
        try w.run(.put(list, tag: "multi"))
        let index = Fixture.imageDigest(list)
        #expect(try w.tables.image(w.ref, index)?.imageSizeInBytes == 30, "a list's size is its largest image's")
        #expect(try w.tables.manifestLists(naming: x, in: w.ref) == [index])

        let refused = try w.run(.delete([ImageIdentifier(imageDigest: x), ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "v2")]))
        #expect(refused.imageFailures.map(\.failureCode) == [.imageReferencedByManifestList, .imageReferencedByManifestList])
        #expect(refused.imageIds == [ImageIdentifier(imageDigest: x, imageTag: "v1")], "a tag that is not the last still goes")
        #expect(try w.tables.image(w.ref, x) != nil)

        let freed = try w.run(.delete([ImageIdentifier(imageDigest: index), ImageIdentifier(imageDigest: x), ImageIdentifier(imageDigest: y)]))
        #expect(freed.imageFailures.isEmpty)
        #expect(try w.tables.imageDigests(in: w.ref).isEmpty)
    }

    @Test func deletingAList_dropsItsReferences() throws {
        var w = try Harness()
        let (x, _) = try w.images()
        let list = Fixture.index([x, x])
        try w.run(.put(list))
        #expect(try w.tables.manifestLists(naming: x, in: w.ref) == [Fixture.imageDigest(list)], "an image listed twice is referenced once")
        try w.run(.delete([ImageIdentifier(imageDigest: Fixture.imageDigest(list))]))
        #expect(try w.tables.manifestLists(naming: x, in: w.ref) == [])
        #expect(try w.run(.delete([ImageIdentifier(imageDigest: x)])).imageFailures.isEmpty)
    }

    /// A list's entries stay until the list goes, even under an image a log from before the
    /// refusal deleted while the list named it: pushed again, that image is refused deletion
    /// until the list is deleted.
    @Test func anImageAnOlderLogDeletedUnderAList_pushedAgain_isRefusedDeletion_untilTheListGoes() throws {
        var w = try Harness()
        let (x, _) = try w.images()
        let list = Fixture.index([x])
        try w.run(.put(list))
        w.position += 1
        let deleted = Event.imageDeleted(ImageDeleted(registryId: w.ref.registryId, repositoryName: w.ref.repositoryName, imageDigest: x))
        try Projector.apply(EventEnvelope(position: w.position, recordedAt: w.now, metadata: testMetadata(), event: deleted), to: &w.tables)
        #expect(try w.tables.image(w.ref, x) == nil && w.tables.manifestLists(naming: x, in: w.ref) == [Fixture.imageDigest(list)])
        try w.run(.put(Fixture.image(config: Fixture.digest("c"), layers: [Fixture.digest("a")])))
        #expect(try w.run(.delete([ImageIdentifier(imageDigest: x)])).imageFailures.map(\.failureCode) == [.imageReferencedByManifestList])
        #expect(try w.run(.delete([ImageIdentifier(imageDigest: Fixture.imageDigest(list))])).imageFailures.isEmpty)
        #expect(try w.run(.delete([ImageIdentifier(imageDigest: x)])).imageFailures.isEmpty)
    }

    @Test func aManifest_givesTheBlobsItNamesTheirMediaTypes() throws {
        var w = try Harness()
        try w.withLayers()
        let (a, c) = (Fixture.digest("a"), Fixture.digest("c"))
        #expect(try w.tables.layer(w.ref, a)?.mediaType == nil)
        try w.run(.put(Fixture.image(config: c, layers: [a])))
        #expect(try w.tables.layer(w.ref, a)?.mediaType == "application/vnd.oci.image.layer.v1.tar")
        #expect(try w.tables.layer(w.ref, c)?.mediaType == "application/vnd.oci.image.config.v1+json")
        #expect(try w.tables.layer(w.ref, Fixture.digest("b"))?.mediaType == nil)
    }

    // MARK: Catalog data and tags

    @Test func createRepository_keepsItsCatalogDataAndTags() throws {
        var w = try Harness()
        let catalog = try RepositoryCatalogInput(description: "d", architectures: ["ARM 64"], logoImage: [1, 2, 3])
        let tags = try ResourceTags([("team", "x"), ("env", nil)])
        let decision = try w.run(.createRepository(try CreateRepository(repositoryName: "team/other", catalog: catalog, tags: tags)))
        #expect(decision.events.map(\.type) == [.repositoryCreated, .repositoryCatalogDataPut, .repositoryTagged])
        let details = try #require(try w.tables.details(RepositoryRef(registryId: testRegistryId, repositoryName: "team/other")))
        #expect(details.description == "d" && details.architectures == ["ARM 64"])
        #expect(details.logoImageDigest == "sha256:039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81")
        #expect(details.tags.map(\.key) == ["env", "team"] && details.tag("env") == "")
    }

    @Test func putCatalogData_replacesIt_andKeepsTheTags() throws {
        var w = try Harness()
        try w.run(.tagResource(try TagResource(resourceArn: arn, tags: [("k", "v")])))
        try w.run(.putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "team/app", catalog: .init(description: "one", usageText: "u"))))
        try w.run(.putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "team/app", catalog: .init(aboutText: "two"))))
        let details = try #require(try w.tables.details(w.ref))
        #expect(details.description == nil && details.usageText == nil && details.aboutText == "two")
        #expect(details.tag("k") == "v")
    }

    /// Tags merge by key; the resource may hold 50, counted after the merge, and a refusal writes nothing.
    @Test func tagResource_mergesByKey_andRefusesTheFiftyFirst() throws {
        var w = try Harness()
        try w.run(.tagResource(try TagResource(resourceArn: arn, tags: (1...50).map { ("k\($0)", "a") })))
        try w.run(.tagResource(try TagResource(resourceArn: arn, tags: [("k1", "b")])))
        #expect(try w.tables.details(w.ref)?.tag("k1") == "b")
        #expect(try w.refusal(.tagResource(try TagResource(resourceArn: arn, tags: [("k51", "c")]))).code == .tooManyTags)
        try w.run(.untagResource(try UntagResource(resourceArn: arn, tagKeys: ["k2", "missing"])))
        #expect(try w.tables.details(w.ref)?.tagKeys.count == 49)
        #expect(try w.decide(.untagResource(try UntagResource(resourceArn: arn, tagKeys: ["missing"]))).events.isEmpty)
        try w.run(.tagResource(try TagResource(resourceArn: arn, tags: [("k51", "c")])))
    }

    @Test func tags_outsideTheRules_areRefusedAsTheModelSays() throws {
        #expect(throws: CommandError(.invalidTagParameter, "The tag key 'aws:x' uses the prefix aws:, which is reserved for AWS")) {
            try ResourceTags([("aws:x", "v")])
        }
        let refused: [[(key: String?, value: String?)]] = [
            [(String(repeating: "k", count: 129), "v")], [("k", String(repeating: "v", count: 257))], [("", "v")], [("k<", "v")],
            [("k", "v"), ("k", "w")], [(nil, "v")],
        ]
        for tags in refused {
            let error = try #require(throws: CommandError.self) { try ResourceTags(tags) }
            #expect(error.code == .invalidTagParameter, "\(tags)")
        }
        #expect(try ResourceTags([(String(repeating: "k", count: 128), String(repeating: "v", count: 256)), ("a b_.:/=+-@é", "")]).count == 2)
        let w = try Harness()
        #expect(try w.refusal(.tagResource(try TagResource(resourceArn: "arn:aws:ecr-public::999999999999:repository/team/app", tags: []))).code == .invalidParameter)
        #expect(try w.refusal(.tagResource(try TagResource(resourceArn: "arn:aws:ecr-public::\(testRegistryId):repository/team/none", tags: []))).code == .repositoryNotFound)
        for arn in ["arn:aws:ecr-public::\(testRegistryId):registry/\(testRegistryId)", "arn:aws:ecr:us-east-1:\(testRegistryId):repository/team/app", "team/app"] {
            #expect(throws: CommandError.self) { try TagResource(resourceArn: arn, tags: []) }
        }
    }

    @Test func deletingARepository_dropsItsDetails() throws {
        var w = try Harness()
        try w.run(.tagResource(try TagResource(resourceArn: arn, tags: [("k", "v")])))
        try w.run(.deleteRepository(try DeleteRepository(repositoryName: "team/app")))
        try w.run(.createRepository(try CreateRepository(repositoryName: "team/app")))
        #expect(try w.tables.details(w.ref) == nil)
    }

    @Test func registryCatalogData_isTheDefaultRegistrys() throws {
        var w = try Harness()
        #expect(try w.decide(.putRegistryCatalogData(try PutRegistryCatalogData(displayName: nil))).events.isEmpty)
        try w.run(.putRegistryCatalogData(try PutRegistryCatalogData(displayName: "Mine")))
        #expect(try w.tables.registryCatalog(testRegistryId)?.displayName == "Mine")
        #expect(throws: CommandError.self) { try PutRegistryCatalogData(displayName: String(repeating: "n", count: 101)) }
    }
}
