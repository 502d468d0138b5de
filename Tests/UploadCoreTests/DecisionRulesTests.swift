import Crypto
import Foundation
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// The layer and image rules (LayerDecisions, ImageDecisions), decided through ``Decider`` against
/// in-memory tables that the projector keeps, as the writer does.
struct DecisionRulesTests {
    static let maxPart = Int64(UploadLayerPart.maximumPartBytes)
    let a = Fixture.digest("a"), b = Fixture.digest("b"), c = Fixture.digest("c"), d = Fixture.digest("d")

    // MARK: UploadLayerPart

    /// A part is recorded only once staged; an exact retry of the last part records nothing, staged or not.
    @Test func part_isRecordedOnlyOnceStaged_andAnExactRetryDecidesNothing() throws {
        var w = try Harness()
        let id = try w.start()
        let unstaged = try w.refusal(.part(id, 0, 99, digest: "sha256:p0", staged: false))
        #expect(unstaged.code == .server)
        #expect(unstaged.message.contains("changed"))
        let decision = try w.run(.part(id, 0, 99, digest: "sha256:p0"))
        #expect(decision.events == [.layerPartUploaded(LayerPartUploaded(
            uploadId: id, registryId: testRegistryId, repositoryName: "team/app", partFirstByte: 0, partLastByte: 99, partDigest: "sha256:p0"))])
        #expect(try w.session(id).bytesReceived == 100)
        #expect(try w.decide(.part(id, 0, 99, digest: "sha256:p0", staged: false)).events.isEmpty)
        #expect(try w.decide(.part(id, 0, 99, digest: "sha256:p0")).events.isEmpty)
        // The same range with other bytes is no retry, and no longer the next part.
        let other = try w.refusal(.part(id, 0, 99, digest: "sha256:other"))
        #expect(other.code == .invalidLayerPart)
        #expect(other.layerPart?.lastValidByteReceived == 99)
    }

    /// After `received` bytes (0 or 100), each is refused, naming the last valid byte (0 when there is none).
    @Test(arguments: [
        ("gap", 100, 150, 199, 50), ("overlap", 100, 50, 149, 100), ("restart", 100, 0, 49, 50),
        ("last byte before first", 100, 100, 99, 1), ("length short of range", 100, 100, 199, 99),
        ("length past range", 100, 100, 199, 101), ("over the part maximum", 100, 100, 100 + maxPart, UInt64(maxPart) + 1),
        ("first part not at 0", 0, 1, 10, 10), ("first part over the maximum", 0, 0, maxPart, UInt64(maxPart) + 1),
    ] as [(String, Int64, Int64, Int64, UInt64)])
    func part_outOfLine_isInvalidLayerPart(why: String, received: Int64, first: Int64, last: Int64, length: UInt64) throws {
        var w = try Harness()
        let id = try w.start()
        if received > 0 { try w.run(.part(id, 0, received - 1)) }
        let error = try w.refusal(.part(id, first, last, length: length))
        #expect(error.code == .invalidLayerPart, "\(why)")
        #expect(error.layerPart?.lastValidByteReceived == UInt64(max(0, received - 1)), "\(why)")
        #expect(error.layerPart?.uploadId == id)
        #expect(try w.session(id).bytesReceived == UInt64(received))
    }

    @Test func partBeyondMaximumParts_isLimitExceeded() throws {
        var w = try Harness()
        w.settings.maximumParts = 2
        let id = try w.start()
        try w.run(.part(id, 0, 9))
        try w.run(.part(id, 10, 19))
        #expect(try w.refusal(.part(id, 20, 29)).code == .limitExceeded)
        #expect(try w.refusal(.part(id, 20, 29, staged: false)).code == .limitExceeded)
        #expect(try w.decide(.part(id, 10, 19, staged: false)).events.isEmpty, "a retry of the last part is still answered")
    }

    @Test func partOrCompletion_ofAnUploadNotActiveInTheRepository_isUploadNotFound() throws {
        var w = try Harness(repositories: ["team/app", "team/other"])
        let elsewhere = try w.start(in: "team/other")
        let ended = try w.layer(a, size: 10)
        for id in ["00000000-0000-4000-8000-0000000000ff", elsewhere, ended] {
            #expect(try w.refusal(.part(id, 10, 19)).code == .uploadNotFound, "\(id)")
            #expect(try w.refusal(.part(id, 0, 9, staged: false)).code == .uploadNotFound, "\(id): no retry once ended")
            #expect(try w.refusal(.complete(id, [b], staged: .init(digest: b, size: 10))).code == .uploadNotFound, "\(id)")
        }
        #expect(try w.refusal(.part(elsewhere, 0, 9, repository: "team/gone")).code == .repositoryNotFound)
        #expect(try w.refusal(.complete(elsewhere, [b], staged: nil, repository: "team/gone")).code == .repositoryNotFound)
    }

    // MARK: CompleteLayerUpload

    /// No parts is EmptyUpload; a non-final part under the minimum is LayerPartTooSmall.
    @Test(arguments: [(UploadSession.minimumPartBytes - 1, true), (UploadSession.minimumPartBytes, false)])
    func completion_needsParts_allButTheLastOfTheMinimumSize(firstLength: UInt64, tooSmall: Bool) throws {
        var w = try Harness()
        let id = try w.start()
        #expect(try w.refusal(.complete(id, [a], staged: .init(digest: a, size: 0))).code == .emptyUpload)
        #expect(try !w.session(id).isReadyToComplete(in: w.ref, rules: .ecrPublic))
        let first = Int64(firstLength)
        try w.run(.part(id, 0, first - 1))
        #expect(try w.session(id).isReadyToComplete(in: w.ref, rules: .ecrPublic), "one part, however small, is the last part")
        try w.run(.part(id, first, first + 9))
        #expect(try w.session(id).isReadyToComplete(in: w.ref, rules: .ecrPublic) == !tooSmall)
        let complete = try Command.complete(id, [a], staged: .init(digest: a, size: firstLength + 10))
        if tooSmall {
            #expect(try w.refusal(complete).code == .layerPartTooSmall)
        } else {
            #expect(try w.decide(complete).events.count == 1)
        }
    }

    @Test(arguments: [
        nil, CompleteLayerUpload.StagedLayer(digest: "sha256:staged", size: 99), CompleteLayerUpload.StagedLayer(digest: "sha256:staged", size: 101),
    ] as [CompleteLayerUpload.StagedLayer?])
    func completion_whoseStagedBytesAreMissingOrOtherThanRecorded_isServerError(staged: CompleteLayerUpload.StagedLayer?) throws {
        var w = try Harness()
        let id = try w.startWithPart()
        let error = try w.refusal(.complete(id, [a], staged: staged))
        #expect(error.code == .server)
        #expect(error.message.contains("changed"))
    }

    @Test func completion_recordsTheStagedLayer_onlyWhenNamed_inAnyCase() throws {
        var w = try Harness()
        let id = try w.startWithPart()
        let staged = CompleteLayerUpload.StagedLayer(digest: a, size: 100)
        #expect(try w.refusal(.complete(id, [b, c], staged: staged)).code == .invalidLayer)
        let decision = try w.run(.complete(id, [b, a.uppercased()], staged: staged))
        #expect(decision.events == [.layerUploadCompleted(LayerUploadCompleted(
            uploadId: id, registryId: testRegistryId, repositoryName: "team/app", layerDigest: a, layerSize: 100))])
    }

    @Test func completion_ofALayerTheRepositoryHas_isLayerAlreadyExists() throws {
        var w = try Harness(repositories: ["team/app", "team/other"])
        let first = try w.layer(a, size: 10)
        #expect(try w.session(first).state == .completed)
        #expect(try w.tables.layer(w.ref, a)?.layerSize == 10)
        let again = try w.startWithPart()
        #expect(try w.refusal(.complete(again, [a], staged: .init(digest: a, size: 100))).code == .layerAlreadyExists)
        #expect(try w.session(again).state == .active)
        try w.layer(a, size: 10, in: "team/other")  // another repository's layers are its own
    }

    // MARK: The session's checks before I/O

    /// After a first part of bytes 0...99, `expects` holds exactly for the parts the decider records.
    @Test(arguments: [
        (100, 199, 100, true), (100, 100, 1, true), (100, 99 + maxPart, UInt64(maxPart), true),
        (0, 99, 100, false), (150, 199, 50, false), (50, 149, 100, false), (100, 99, 1, false), (100, 199, 99, false),
        (100, 100 + maxPart, UInt64(maxPart) + 1, false),
    ] as [(Int64, Int64, UInt64, Bool)])
    func expects_holdsExactlyForThePartsTheDeciderRecords(first: Int64, last: Int64, length: UInt64, isNext: Bool) throws {
        var w = try Harness()
        let id = try w.startWithPart()
        let command = try Command.part(id, first, last, length: length)
        guard case .uploadLayerPart(let part) = command else { Issue.record("not a part: \(command)"); return }
        let recorded = (try? w.decide(command))?.events.isEmpty == false
        #expect(recorded == isNext, "the decider records the consecutive parts within the size limit, and only those")
        #expect(try w.session(id).expects(part, in: w.ref, settings: w.settings) == recorded)
    }

    @Test func expects_andReadiness_failForAnotherRepository_atThePartLimit_andOnceEnded() throws {
        var w = try Harness(repositories: ["team/app", "team/other"])
        let id = try w.startWithPart()
        guard case .uploadLayerPart(let next) = try Command.part(id, 100, 199) else { Issue.record("not a part"); return }
        let other = RepositoryRef(registryId: testRegistryId, repositoryName: "team/other")
        var session = try w.session(id)
        #expect(session.expects(next, in: w.ref, settings: w.settings) && session.isReadyToComplete(in: w.ref, rules: .ecrPublic))
        #expect(!session.expects(next, in: other, settings: w.settings) && !session.isReadyToComplete(in: other, rules: .ecrPublic))
        #expect(try w.refusal(.part(id, 100, 199, repository: "team/other")).code == .uploadNotFound)
        var limited = w.settings
        limited.maximumParts = 1
        #expect(!session.expects(next, in: w.ref, settings: limited))
        try w.run(.complete(id, [a], staged: .init(digest: a, size: 100)))
        session = try w.session(id)
        #expect(!session.expects(next, in: w.ref, settings: w.settings) && !session.isReadyToComplete(in: w.ref, rules: .ecrPublic))
    }

    // MARK: ExpireIdleUploads

    @Test func expiry_takesActiveUploadsIdleAtLeastTheLimit_atMostLimitOfThem() throws {
        var w = try Harness()
        let t0 = w.now.millisecondsSinceEpoch
        let old = try w.start(), recent = try w.start()
        let ended = try w.layer(a, size: 10)
        w.now = Timestamp(millisecondsSinceEpoch: t0 + 1000)
        try w.run(.part(recent, 0, 9))
        w.now = Timestamp(millisecondsSinceEpoch: t0 + 1999)
        #expect(try Self.expired(w.decide(.expire(idle: 1000))) == [old])
        w.now = Timestamp(millisecondsSinceEpoch: t0 + 2000)
        #expect(try Self.expired(w.decide(.expire(idle: 1000))) == [old, recent], "idle exactly the limit expires; the completed one never")
        #expect(try Self.expired(w.decide(.expire(idle: 1000, limit: 1))) == [old])
        let decision = try w.run(.expire(idle: 1000, limit: 1))
        #expect(decision.events == [.uploadExpired(UploadExpired(
            uploadId: old, registryId: testRegistryId, repositoryName: "team/app", lastActivityAt: Timestamp(millisecondsSinceEpoch: t0)))])
        #expect(try w.session(old).state == .expired)
        #expect(try w.session(ended).state == .completed)
        #expect(try Self.expired(w.decide(.expire(idle: 1))) == [recent], "ended uploads are skipped")
    }

    static func expired(_ decision: Decision) -> [String] {
        decision.events.compactMap { event -> String? in guard case .uploadExpired(let e) = event else { return nil }; return e.uploadId }
    }
}

/// Decides commands against in-memory tables and applies what they record, at increasing positions.
struct Harness {
    var tables = InMemoryProjectionState()
    var settings = DecisionSettings(defaultRegistryId: testRegistryId)
    var now = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
    var position: UInt64 = 0
    let ids = SequentialUploadIDs()
    let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")

    init(repositories: [String] = ["team/app"]) throws {
        for name in repositories { try run(.createRepository(try CreateRepository(repositoryName: name))) }
    }

    func decide(_ command: Command) throws -> Decision {
        let context = DecisionContext(now: now, newUploadId: command.startsUpload ? ids.next() : nil)
        return try Decider.decide(command, state: tables, settings: settings, context: context)
    }

    @discardableResult
    mutating func run(_ command: Command) throws -> Decision {
        let decision = try decide(command)
        try apply(decision.events)
        return decision
    }

    /// Appends `events` at the next positions, recorded `now`.
    mutating func apply(_ events: [Event]) throws {
        for event in events {
            position += 1
            try Projector.apply(EventEnvelope(position: position, recordedAt: now, metadata: testMetadata(), event: event), to: &tables)
        }
    }

    func refusal(_ command: Command) throws -> CommandError { try #require(throws: CommandError.self) { try decide(command) } }
    func session(_ uploadId: String) throws -> UploadSession { try #require(try tables.session(uploadId)) }

    /// An upload in team/app holding bytes 0...99 (one part, digest `sha256:0-99`).
    mutating func startWithPart() throws -> String {
        let id = try start()
        try run(.part(id, 0, 99))
        return id
    }

    mutating func start(in repository: String = "team/app") throws -> String {
        let decision = try run(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: repository)))
        guard case .uploadInitiated(let e)? = decision.events.first else { throw CommandError(.server, "no UploadInitiated") }
        return e.uploadId
    }

    /// Uploads a layer of `size` bytes in one staged part and completes it; returns the upload id.
    @discardableResult
    mutating func layer(_ digest: String, size: UInt64, in repository: String = "team/app") throws -> String {
        let id = try start(in: repository)
        try run(.part(id, 0, Int64(size) - 1, repository: repository))
        try run(.complete(id, [digest], staged: .init(digest: digest, size: size), repository: repository))
        return id
    }

    /// Layers a (10 bytes) and b (20), and the config c (7), in team/app.
    mutating func withLayers() throws {
        for digest in [Fixture.digest("a"), Fixture.digest("b"), Fixture.digest("c")] {
            try layer(digest, size: Fixture.blobSizes[digest]!)
        }
    }

    /// Image x (config c, layer a) tagged v1 and v2, and untagged image y (layers a and b).
    mutating func images() throws -> (x: String, y: String) {
        try withLayers()
        let x = Fixture.image(config: Fixture.digest("c"), layers: [Fixture.digest("a")])
        let y = Fixture.image(config: Fixture.digest("c"), layers: [Fixture.digest("a"), Fixture.digest("b")])
        for command in [try Command.put(x, tag: "v1"), try Command.put(x, tag: "v2"), try Command.put(y)] { try run(command) }
        return (Fixture.imageDigest(x), Fixture.imageDigest(y))
    }
}

enum Fixture {
    static func digest(_ hex: Character) -> String { "sha256:" + String(repeating: hex, count: 64) }
    /// The sizes ``Harness/withLayers()`` uploads a, b and c with, which ``image(config:layers:)``
    /// states for them (1 for any other blob).
    static let blobSizes: [String: UInt64] = [digest("a"): 10, digest("b"): 20, digest("c"): 7]
    static func image(config: String, layers: [String], sizes: [String: UInt64] = blobSizes) -> String {
        func descriptor(_ type: String, _ digest: String) -> String {
            #"{"mediaType":"\#(type)","digest":"\#(digest)","size":\#(sizes[digest] ?? 1)}"#
        }
        let list = layers.map { descriptor("application/vnd.oci.image.layer.v1.tar", $0) }.joined(separator: ",")
        let configDescriptor = descriptor("application/vnd.oci.image.config.v1+json", config)
        return #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":\#(configDescriptor),"layers":[\#(list)]}"#
    }
    /// The sizes of the manifests ``Harness/images()`` pushes, x's and y's, which ``index(_:)``
    /// states for them (1 for any other).
    static let manifestSizes: [String: UInt64] = Dictionary(uniqueKeysWithValues: [[digest("a")], [digest("a"), digest("b")]].map {
        let manifest = image(config: digest("c"), layers: $0)
        return (imageDigest(manifest), UInt64(manifest.utf8.count))
    })
    static func index(_ images: [String], sizes: [String: UInt64] = manifestSizes) -> String {
        let list = images.map { #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#($0)","size":\#(sizes[$0] ?? 1)}"# }
        return #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(list.joined(separator: ","))]}"#
    }
    /// The manifest's digest, computed here rather than by the PutImage under test.
    static func imageDigest(_ manifest: String) -> String {
        "sha256:" + SHA256.hash(data: Array(manifest.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

extension Command {
    static func part(_ uploadId: String, _ first: Int64, _ last: Int64, length: UInt64? = nil, digest: String? = nil,
                     staged: Bool = true, repository: String = "team/app") throws -> Command {
        var part = try UploadLayerPart(
            repositoryName: repository, uploadId: uploadId, partFirstByte: first, partLastByte: last,
            partLength: length ?? UInt64(max(0, last - first + 1)), partDigest: digest ?? "sha256:\(first)-\(last)")
        part.staged = staged
        return .uploadLayerPart(part)
    }
    static func complete(_ uploadId: String, _ digests: [String], staged: CompleteLayerUpload.StagedLayer?,
                         repository: String = "team/app") throws -> Command {
        var complete = try CompleteLayerUpload(repositoryName: repository, uploadId: uploadId, layerDigests: digests)
        complete.staged = staged
        return .completeLayerUpload(complete)
    }
    static func put(_ manifest: String, tag: String? = nil, digest: String? = nil, throughTheRegistry: Bool = false) throws -> Command {
        .putImage(try PutImage(repositoryName: "team/app", imageManifest: manifest, imageTag: tag, imageDigest: digest, sha512Allowed: throughTheRegistry))
    }
    static func delete(_ ids: [ImageIdentifier]) throws -> Command {
        .batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: ids))
    }
    static func expire(idle: Int64, limit: Int = 1000) -> Command {
        .expireIdleUploads(ExpireIdleUploads(idleMilliseconds: idle, limit: limit))
    }
}
