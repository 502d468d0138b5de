import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// Replay's flat fold (``FlatEvent`` decoded into ``FlatProjectionState``) against the one
/// ``Projector`` folding whole records into ``InMemoryProjectionState``: the same log must give the
/// same entries, byte for byte, and the same refusals, in the same words.
struct FlatReplayTests {
    /// A valid log of every event type, made by a seeded generator that keeps its own model of
    /// what may come next.
    struct LogMaker {
        private(set) var records: [[UInt8]] = []
        private var random: UInt64
        private var time: Int64 = 1_700_000_000_000
        private let registry = "123456789012"
        private var repositories = ["team/app", "team/web", "solo"]
        private var live: Set<String> = []
        /// Active uploads: id, repository, bytes received, parts.
        private var uploads: [(id: String, repository: String, bytes: UInt64, parts: Int)] = []
        private var images: [(repository: String, digest: String, tags: [String])] = []
        private var layers: [(repository: String, digest: String, size: UInt64)] = []
        /// Repositories with the tag `env`, and with a policy: the projector refuses untagging or
        /// deleting what is not there.
        private var tagged: Set<String> = [], withPolicy: Set<String> = []
        private var serial = 0

        /// One name in `nonASCIIEvery` is not ASCII (`nil`: none).
        private let nonASCIIEvery: Int?

        init(seed: UInt64, nonASCIIEvery: Int? = 7) {
            random = seed
            self.nonASCIIEvery = nonASCIIEvery
        }

        private mutating func next(_ bound: Int) -> Int {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((random >> 33) % UInt64(bound))
        }

        private mutating func name(_ prefix: String) -> String {
            serial += 1
            // Names that are not ASCII are left to the full decoder by the fast path.
            guard let nonASCIIEvery, next(nonASCIIEvery) == 0 else { return "\(prefix)-\(serial)" }
            return "\(prefix)-\u{E9}\(serial)"
        }

        mutating func add(_ event: Event) {
            // Now and then a time before the last (a clock stepped back in a log from elsewhere):
            // the initiations index must still come out in key order.
            time += next(50) == 0 ? -10 : Int64(next(3))
            let invocation: String? = switch next(4) {
            case 0: nil
            case 1: "inv-\u{FC}-\(records.count)"
            default: "inv-\(records.count)"
            }
            let metadata = RequestMetadata(requestId: "req-\(records.count)", source: "test", userAgent: "ua \u{2603}", invocationId: invocation)
            let envelope = EventEnvelope(position: UInt64(records.count + 1), recordedAt: Timestamp(millisecondsSinceEpoch: time), metadata: metadata, event: event)
            records.append(envelope.encoded())
        }

        mutating func make(steps: Int) -> [[UInt8]] {
            for repository in repositories { create(repository) }
            for _ in 0..<steps / 2 { step() }
            deleteAndCreate("solo")
            for _ in 0..<steps / 2 { step() }
            // Calls that changed nothing, on a repository and on the registry: last, so that the
            // steps' random draws (and the states the tests count on) stay as they were.
            add(.callAnswered(CallAnswered(registryId: registry, repositoryName: "solo", operation: "BatchDeleteImage", failureCodes: ["ImageNotFound", "MissingDigestAndTag"])))
            add(.callAnswered(CallAnswered(registryId: registry, repositoryName: nil, operation: "PutRegistryCatalogData", failureCodes: [])))
            return records
        }

        /// DeleteRepository with force: its active uploads end first, and its images go before it;
        /// then a repository of the same name is created again.
        private mutating func deleteAndCreate(_ repository: String) {
            for image in images where image.repository == repository {
                add(.imageDeleted(ImageDeleted(registryId: registry, repositoryName: repository, imageDigest: image.digest)))
            }
            images.removeAll { $0.repository == repository }
            for u in uploads where u.repository == repository {
                add(.uploadAborted(UploadAborted(uploadId: u.id, registryId: registry, repositoryName: repository, reason: .repositoryDeleted)))
            }
            uploads.removeAll { $0.repository == repository }
            layers.removeAll { $0.repository == repository }
            tagged.remove(repository)
            withPolicy.remove(repository)
            add(.repositoryDeleted(RepositoryDeleted(registryId: registry, repositoryName: repository, force: true, createdAt: nil)))
            live.remove(repository)
            create(repository)
        }

        private mutating func push(
            _ digest: String, tag: String, in repository: String, manifest: String = "{}",
            mediaType: String = "application/vnd.oci.image.manifest.v1+json"
        ) {
            add(.imagePushed(ImagePushed(
                registryId: registry, repositoryName: repository, imageDigest: digest, imageTag: tag, imageManifest: manifest,
                imageManifestMediaType: mediaType, artifactMediaType: nil, imageSizeInBytes: 2, pushedAt: Timestamp(millisecondsSinceEpoch: time))))
        }

        /// A digest a manifest list may name: `sha256:` and 64 hex digits, unique in the log.
        private mutating func wellFormedDigest() -> String {
            serial += 1
            let hex = String(serial, radix: 16)
            return "sha256:" + String(repeating: "0", count: 64 - hex.count) + hex
        }

        private mutating func create(_ repository: String) {
            live.insert(repository)
            add(.repositoryCreated(RepositoryCreated(registryId: registry, repositoryName: repository, createdAt: Timestamp(millisecondsSinceEpoch: time))))
        }

        private mutating func step() {
            let repository = repositories[next(repositories.count)]
            switch next(13) {
            case 0...2 where live.contains(repository):
                let id = name("upload")
                uploads.append((id, repository, 0, 0))
                add(.uploadInitiated(UploadInitiated(uploadId: id, partSize: 5_242_880, registryId: registry, repositoryName: repository, initiatedAt: Timestamp(millisecondsSinceEpoch: time))))
            case 3...5 where !uploads.isEmpty:
                let i = next(uploads.count)
                let length: UInt64 = next(2) == 0 ? 1024 : 5_242_880
                let u = uploads[i]
                add(.layerPartUploaded(LayerPartUploaded(uploadId: u.id, registryId: registry, repositoryName: u.repository, partFirstByte: u.bytes, partLastByte: u.bytes + length - 1, partDigest: name("sha256:part"))))
                uploads[i].bytes += length
                uploads[i].parts += 1
            case 6 where uploads.contains { $0.parts > 0 }:
                let i = uploads.firstIndex { $0.parts > 0 }!
                let u = uploads.remove(at: i)
                let digest = name("sha256:layer")
                layers.append((u.repository, digest, u.bytes))
                add(.layerUploadCompleted(LayerUploadCompleted(uploadId: u.id, registryId: registry, repositoryName: u.repository, layerDigest: digest, layerSize: u.bytes)))
            case 7 where !uploads.isEmpty:
                let u = uploads.remove(at: next(uploads.count))
                switch next(3) {
                case 0: add(.uploadExpired(UploadExpired(uploadId: u.id, registryId: registry, repositoryName: u.repository, lastActivityAt: Timestamp(millisecondsSinceEpoch: time))))
                case 1: add(.uploadAborted(UploadAborted(uploadId: u.id, registryId: registry, repositoryName: u.repository, reason: .cancelled)))
                default: add(.uploadAborted(UploadAborted(uploadId: u.id, registryId: registry, repositoryName: u.repository, reason: .layerAlreadyExists)))
                }
            case 10 where live.contains(repository) && !layers.isEmpty:
                // A mount, from another repository or (no `from`) from the blob store.
                let source = layers[next(layers.count)]
                guard !layers.contains(where: { $0.repository == repository && $0.digest == source.digest }) else { break }
                layers.append((repository, source.digest, source.size))
                add(.layerMounted(LayerMounted(
                    registryId: registry, repositoryName: repository, layerDigest: source.digest, layerSize: source.size,
                    fromRepositoryName: next(2) == 0 ? source.repository : nil)))
            case 8 where live.contains(repository):
                if let i = images.firstIndex(where: { $0.repository == repository }), next(2) == 0 {
                    let image = images[i]
                    if let tag = image.tags.first {
                        images[i].tags.removeFirst()
                        add(.imageUntagged(ImageUntagged(registryId: registry, repositoryName: repository, imageDigest: image.digest, imageTag: tag)))
                    } else {
                        images.remove(at: i)
                        add(.imageDeleted(ImageDeleted(registryId: registry, repositoryName: repository, imageDigest: image.digest)))
                    }
                } else {
                    let held = images.indices.filter { images[$0].repository == repository }
                    // Digests a list can name (a manifest names only well-formed ones).
                    let listable = held.map { images[$0].digest }.filter(Validation.isLayerDigest)
                    switch next(4) {
                    case 0 where !held.isEmpty:
                        // Another tag on an image it holds: a new one, or one moved from another image.
                        let i = held[next(held.count)]
                        let from = held.first { $0 != i && !images[$0].tags.isEmpty }
                        let tag = next(2) == 0 && from != nil ? images[from!].tags.removeFirst() : name("v")
                        images[i].tags.append(tag)
                        push(images[i].digest, tag: tag, in: repository)
                    case 1 where !listable.isEmpty:
                        // A list naming some of its images, one of them twice; deleted later, before
                        // or after them (a log from before the decider refused the second).
                        let children = [listable[next(listable.count)], listable[next(listable.count)], listable[0]]
                        let manifests = children.map { #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#($0)","size":2}"# }
                        let digest = wellFormedDigest(), tag = name("list")
                        images.append((repository, digest, [tag]))
                        push(digest, tag: tag, in: repository,
                             manifest: #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["# + manifests.joined(separator: ",") + "]}",
                             mediaType: "application/vnd.oci.image.index.v1+json")
                    default:
                        let digest = next(2) == 0 ? wellFormedDigest() : name("sha256:image"), tag = name("v")
                        images.append((repository, digest, [tag]))
                        push(digest, tag: tag, in: repository)
                    }
                }
            case 9 where repository == "solo" && next(4) == 0:
                deleteAndCreate(repository)
            case 11 where live.contains(repository):
                switch next(4) {
                case 0:
                    add(.repositoryCatalogDataPut(RepositoryCatalogDataPut(
                        registryId: registry, repositoryName: repository, description: name("about"), architectures: ["ARM", "x86-64"],
                        operatingSystems: next(2) == 0 ? [] : ["Linux"], logoImageDigest: nil, aboutText: nil, usageText: name("usage"))))
                case 1 where !tagged.contains(repository):
                    tagged.insert(repository)
                    add(.repositoryTagged(RepositoryTagged(registryId: registry, repositoryName: repository, tagKeys: ["env", "team"], tagValues: [name("prod"), "x"])))
                case 1, 2:
                    guard tagged.remove(repository) != nil else { break }
                    add(.repositoryUntagged(RepositoryUntagged(registryId: registry, repositoryName: repository, tagKeys: ["env"])))
                default: add(.registryCatalogDataPut(RegistryCatalogDataPut(registryId: registry, displayName: name("registry"))))
                }
            case 12 where live.contains(repository):
                let policy = #"{"Version":"2012-10-17","Statement":[]}"#
                if withPolicy.remove(repository) != nil {
                    add(.repositoryPolicyDeleted(RepositoryPolicyDeleted(registryId: registry, repositoryName: repository, policyText: policy)))
                } else {
                    withPolicy.insert(repository)
                    add(.repositoryPolicySet(RepositoryPolicySet(registryId: registry, repositoryName: repository, policyText: policy)))
                }
            default:
                break
            }
        }
    }

    /// Both folds over `records`, chunked as replay chunks them.
    static func folds(_ records: [[UInt8]], chunk: Int = 5) -> (flat: Result<FlatProjectionState, Replayer.Failure>, whole: Result<InMemoryProjectionState, Replayer.Failure>) {
        func fold<State: ReplayState>(_: State.Type) -> Result<State, Replayer.Failure> {
            Result {
                var state = State()
                var events = DecodedChunk<State.Event>(capacity: chunk)
                for (i, record) in records.enumerated() {
                    events.events.append(try record.withUnsafeBytes { try State.decode(position: UInt64(i + 1), record: $0, into: &events.bytes) })
                    if events.events.count == chunk {
                        try state.fold(events)
                        events.removeAll()
                    }
                }
                try state.fold(events)
                return state
            }.mapError { $0 as! Replayer.Failure }
        }
        return (fold(FlatProjectionState.self), fold(InMemoryProjectionState.self))
    }

    @Test(arguments: [1, 2, 3]) func theFlatFold_givesTheEntriesProjectorGives(seed: UInt64) throws {
        var maker = LogMaker(seed: seed)
        let records = maker.make(steps: 1500)
        let (flat, whole) = Self.folds(records)
        let f = try flat.get(), w = try whole.get()
        let difference = ProjectionDigest.firstDifference(ProjectionDigest.entries(f), ProjectionDigest.entries(w), leftName: "flat", rightName: "whole")
        #expect(difference == nil, "\(difference ?? "")")
        #expect(ProjectionDigest.of(f) == ProjectionDigest.of(w))
        // What the decider reads from a state, when Projector folds a rare event into the flat one.
        #expect(f.allActiveUploads() == w.allActiveUploads())
        for repository in ["team/app", "team/web", "solo"] {
            let ref = RepositoryRef(registryId: "123456789012", repositoryName: repository)
            #expect(f.activeUploads(in: ref) == w.activeUploads(in: ref))
            #expect(f.repository(ref) == w.repository(ref))
        }
        for id in w.allActiveUploads() { #expect(f.session(id) == w.session(id)) }
        // The log exercised what it is for: every type, and both the fast path and the full decoder's.
        let kinds = records.indices.map { i in
            records[i].withUnsafeBytes { raw -> String in
                var bytes: [UInt8] = []
                switch try! FlatEvent(position: UInt64(i + 1), record: raw, appendingTo: &bytes) {
                case .upload(let e): return "fast \(e.type.name)"
                case .decoded(let e): return "decoded \(e.event.type.name)"
                }
            }
        }
        // Every event type, a new one too: the generator must learn it (AddingAnEvent).
        for kind in ["fast UploadInitiated", "fast LayerPartUploaded", "fast LayerUploadCompleted"] + EventType.allCases.map({ "decoded \($0.name)" }) {
            #expect(kinds.contains(kind), "the log has no \(kind); it has \(Set(kinds).sorted())")
        }
    }

    /// Verify compares its two rebuilds with `holdsSameState(as:)` and hashes the second only when
    /// that fails, so it must hold for two folds of one log however they are batched, and agree with
    /// the digest for two logs that differ by one event, at every length.
    @Test func holdingTheSameState_agreesWithTheDigest_forEveryPrefixOfALog() throws {
        var maker = LogMaker(seed: 4)
        let records = maker.make(steps: 300)
        let inChunks = try Self.folds(records, chunk: 1024).flat.get(), oneByOne = try Self.folds(records, chunk: 1).flat.get()
        let sameAcrossBatching = inChunks.holdsSameState(as: oneByOne)
        #expect(sameAcrossBatching)
        var previous = try Self.folds([]).flat.get()
        var differed = 0
        for length in 1...records.count {
            let state = try Self.folds(Array(records.prefix(length))).flat.get()
            let sameDigest = ProjectionDigest.of(state) == ProjectionDigest.of(previous)
            let same = state.holdsSameState(as: previous), sameTheOtherWay = previous.holdsSameState(as: state)
            #expect(same == sameDigest, "after \(length) events")
            #expect(sameTheOtherWay == sameDigest, "after \(length) events, compared the other way")
            if !sameDigest { differed += 1 }
            previous = state
        }
        #expect(differed == records.count, "every event of this log changes some table")
    }

    /// A change to any one table alone is seen, so no table's comparison can be left out unnoticed
    /// (above, most events also add an invocation mark, which would hide a missing comparison).
    @Test func aChangeToAnyOneTable_meansAnotherState() throws {
        var maker = LogMaker(seed: 5)
        let state = try Self.folds(maker.make(steps: 400)).flat.get()
        let session = try #require(state.allActiveUploads().first.flatMap(state.session))
        let ref = session.repository
        let repository = try #require(state.repository(ref))
        let flatLayer = try #require(state.layers.lazy.compactMap { $0 }.first)
        let layer = state.layerRecord(flatLayer), layerRef = state.repositoryRefs[Int(flatLayer.repository)]
        let (imageRef, image) = try #require(state.repositoryRefs.lazy.flatMap { ref in
            state.imageDigests(in: ref).compactMap { state.image(ref, $0) }.map { (ref, $0) } }.first { !state.tags(of: $0.1.imageDigest, in: $0.0).isEmpty })
        let tagName = try #require(state.tags(of: image.imageDigest, in: imageRef).first)
        #expect(state.repositoryRefs.contains { ref in state.imageDigests(in: ref).contains { !state.manifestLists(naming: $0, in: ref).isEmpty } },
                "the log holds a manifest list naming an image")
        #expect(state.repositoryRefs.contains { ref in state.imageDigests(in: ref).contains { state.tags(of: $0, in: ref).count > 1 } },
                "the log holds an image of more than one tag")
        let tag = try #require(state.tag(imageRef, tagName))
        let changes: [(String, (inout FlatProjectionState) -> Void)] = [
            ("a session", { var s = session; s.bytesReceived += 1; $0.put(s) }),
            ("an active upload", { $0.setUpload(session.uploadId, in: ref, active: false) }),
            ("a repository", { var r = repository; r.layerCount += 1; $0.put(r) }),
            ("a layer", { var l = layer; l.layerSize += 1; $0.put(l, in: layerRef) }),
            ("an initiation", { $0.recordInitiation(in: ref, at: Timestamp(millisecondsSinceEpoch: 1), position: 1) }),
            ("an invocation mark", { $0.put(InvocationMark(invocationId: "i", requestId: "r", recordedAt: Timestamp(millisecondsSinceEpoch: 1)), at: 1) }),
            // Its bytes unchanged: a new mark above adds bytes too.
            ("an invocation mark's time", { $0.marks[0].recordedAt = Timestamp(millisecondsSinceEpoch: 1) }),
            ("an image", { var i = image; i.imageSizeInBytes += 1; $0.put(i, in: imageRef) }),
            ("a tag", { var t = tag; t.createdAt = Timestamp(millisecondsSinceEpoch: 1); $0.put(t, named: tagName, in: imageRef) }),
            ("an image's tags", { $0.put(tag, named: tagName + "-more", in: imageRef) }),
            ("the lists naming an image", { $0.setManifestList("sha256:list", naming: image.imageDigest, in: imageRef, present: true) }),
            ("a referrer", { $0.setReferrer("sha256:referrer", of: image.imageDigest, in: imageRef, present: true) }),
            ("a repository's details", { var d = $0.details(ref) ?? RepositoryDetails(); d.usageText = "changed"; $0.put(d, of: ref) }),
            ("a registry's catalog", { $0.put(RegistryCatalog(displayName: "changed"), of: ref.registryId) }),
        ]
        for (name, change) in changes + Self.changesOutsideTheTablesAPI(state) {
            var changed = state
            change(&changed)
            #expect(ProjectionDigest.of(changed) != ProjectionDigest.of(state), "\(name): the change reached no table")
            let same = changed.holdsSameState(as: state)
            #expect(!same, "\(name)")
        }
    }

    /// Changes the tables' API cannot make alone: a ref split differently under the same key (a
    /// registry id may hold a `/` in a log's record), an initiation's repository, a mark's bytes.
    static func changesOutsideTheTablesAPI(_ state: FlatProjectionState) -> [(String, (inout FlatProjectionState) -> Void)] {
        let ref = state.repositoryRefs[0]
        let resplit = RepositoryRef(
            registryId: ref.registryId + "/" + ref.repositoryName.prefix { $0 != "/" },
            repositoryName: String(ref.repositoryName.drop { $0 != "/" }.dropFirst()))
        return [
            ("a repository's ref, split elsewhere under the same key", { $0.repositoryRefs[0] = resplit }),
            ("an initiation's repository", { $0.initiations[0].repository = ($0.initiations[0].repository + 1) % Int32($0.repositoryRefs.count) }),
            ("an invocation mark's bytes", { $0.markBytes[$0.marks[0].start] ^= 1 }),
        ]
    }

    /// The same log with one name's bytes changed wherever it appears (same length, so the records
    /// still frame): the same numbers, other names; each names' table must be compared by bytes.
    @Test(arguments: [("upload-", "uploaD-"), ("sha256:part", "sha256:parT"), ("team/web", "team/weX")])
    func aLogWithOneNameRenamed_holdsAnotherState(from: String, to: String) throws {
        var maker = LogMaker(seed: 6)
        let records = maker.make(steps: 300)
        let renamed = records.map { record in
            var record = record
            let needle = Array(from.utf8), replacement = Array(to.utf8)
            var i = 0
            while i + needle.count <= record.count {
                if record[i..<i + needle.count].elementsEqual(needle) {
                    record.replaceSubrange(i..<i + needle.count, with: replacement)
                    i += needle.count
                } else {
                    i += 1
                }
            }
            return record
        }
        #expect(renamed != records, "the log holds \(from)")
        let a = try Self.folds(records).flat.get(), b = try Self.folds(renamed).flat.get()
        #expect(ProjectionDigest.of(a) != ProjectionDigest.of(b))
        let same = a.holdsSameState(as: b)
        #expect(!same)
    }

    /// Events that contradict the state before them are refused by both folds at the same
    /// position, in the same words.
    @Test func contradictions_areRefusedAsProjectorRefusesThem() throws {
        // All ASCII, so that each contradiction takes the fast path (checked below).
        var maker = LogMaker(seed: 7, nonASCIIEvery: nil)
        let base = maker.make(steps: 60)
        let (flat, _) = Self.folds(base)
        let state = try flat.get()
        let registry = "123456789012"
        let active = try #require(state.allActiveUploads().first)
        let session = try #require(state.session(active))
        let repository = session.repositoryName
        let completed = try #require(state.sessions.indices.first(where: { state.sessions[$0]?.state == .completed }))
        let done = state.uploadIds.string(completed)
        let layer = try #require(state.session(done)?.layerDigest)
        let layerRepository = try #require(state.session(done)?.repositoryName)
        let contradictions: [Event] = [
            .uploadInitiated(UploadInitiated(uploadId: active, partSize: 1, registryId: registry, repositoryName: repository, initiatedAt: .init(millisecondsSinceEpoch: 1))),
            .uploadInitiated(UploadInitiated(uploadId: "new", partSize: 1, registryId: registry, repositoryName: "nowhere", initiatedAt: .init(millisecondsSinceEpoch: 1))),
            .layerPartUploaded(LayerPartUploaded(uploadId: active, registryId: registry, repositoryName: repository, partFirstByte: session.bytesReceived + 1, partLastByte: session.bytesReceived + 9, partDigest: "sha256:x")),
            .layerPartUploaded(LayerPartUploaded(uploadId: done, registryId: registry, repositoryName: layerRepository, partFirstByte: 0, partLastByte: 9, partDigest: "sha256:x")),
            .layerPartUploaded(LayerPartUploaded(uploadId: active, registryId: registry, repositoryName: "nowhere", partFirstByte: 0, partLastByte: 9, partDigest: "sha256:x")),
            .layerUploadCompleted(LayerUploadCompleted(uploadId: active, registryId: registry, repositoryName: layerRepository, layerDigest: layer, layerSize: 1)),
            .layerUploadCompleted(LayerUploadCompleted(uploadId: done, registryId: registry, repositoryName: layerRepository, layerDigest: "sha256:new", layerSize: 1)),
            .layerUploadCompleted(LayerUploadCompleted(uploadId: "missing", registryId: registry, repositoryName: "nowhere", layerDigest: "sha256:new", layerSize: 1)),
        ]
        for event in contradictions {
            let envelope = EventEnvelope(position: UInt64(base.count + 1), recordedAt: .init(millisecondsSinceEpoch: 1_800_000_000_000), metadata: testMetadata(), event: event)
            var bytes: [UInt8] = []
            guard case .upload = try envelope.encoded().withUnsafeBytes({ try FlatEvent(position: envelope.position, record: $0, appendingTo: &bytes) }) else {
                Issue.record("\(event.type.name) did not take the fast path")
                continue
            }
            let (flat, whole) = Self.folds(base + [envelope.encoded()])
            guard case .failure(let f) = flat, case .failure(let w) = whole else {
                Issue.record("\(event.type.name) was folded: flat \(flat), whole \(whole)")
                continue
            }
            #expect(f == w)
        }
    }

    /// The digest sorts names by their ranks: the ranks must order them exactly as their bytes do,
    /// wherever they differ: inside the eight bytes after the shared prefix, past them, in a zero
    /// byte against the end of a shorter name, or in the shared prefix's length itself.
    @Test(arguments: [0 as UInt64, 1, 2, 3]) func byteOrderRanks_orderNamesAsTheirBytesDo(seed: UInt64) {
        var random = seed &+ 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((random >> 33) % UInt64(bound))
        }
        var names: Set<[UInt8]> = []
        // Seed 0: no prefix at all is shared (one name is empty).
        if seed == 0 { names.insert([]) }
        let prefix = Array("sha256:".utf8).prefix(seed == 0 ? 0 : 7)
        while names.count < 400 {
            // Few distinct bytes (0 among them) and lengths around the eight-byte window's end.
            let length = next(20)
            names.insert(Array(prefix) + (0..<length).map { _ in [0, 1, 0x61, 0xFF][next(4)] })
        }
        var table = NameTable()
        // Interned in a seeded order that is not the bytes' (a set's own order varies by process).
        var order = names.sorted { $0.lexicographicallyPrecedes($1) }
        for i in order.indices.reversed() { order.swapAt(i, next(i + 1)) }
        for name in order { _ = name.withUnsafeBytes { table.intern($0) } }
        let ranks = table.byteOrderRanks()
        #expect(Set(ranks).count == table.count)
        let byRank = (0..<table.count).sorted { ranks[$0] < ranks[$1] }
        #expect(byRank == (0..<table.count).sorted(by: table.precedes), "\(byRank.map(table.key))")
    }

    /// The fast path takes only what the full decoder takes, and reads the same values: every
    /// byte of each kind of record changed, both decoders agree (the same event, or the same error).
    @Test func theFastPath_readsEveryChangedRecordAsTheFullDecoderDoes() throws {
        let metadata = RequestMetadata(requestId: "req-1", source: "test", userAgent: "ua", invocationId: "inv-1")
        let events: [Event] = [
            .uploadInitiated(UploadInitiated(uploadId: "u1", partSize: 300, registryId: "123456789012", repositoryName: "a/b", initiatedAt: .init(millisecondsSinceEpoch: 5))),
            .layerPartUploaded(LayerPartUploaded(uploadId: "u1", registryId: "123456789012", repositoryName: "a/b", partFirstByte: 100, partLastByte: 120, partDigest: "sha256:p")),
            .layerUploadCompleted(LayerUploadCompleted(uploadId: "u1", registryId: "123456789012", repositoryName: "a/b", layerDigest: "sha256:l", layerSize: 121)),
        ]
        for event in events {
            let record = EventEnvelope(position: 1, recordedAt: .init(millisecondsSinceEpoch: 9), metadata: metadata, event: event).encoded()
            var taken = 0
            for index in record.indices {
                for change in [UInt8(0x00), 0x01, 0x7F, 0x80, 0xC3, 0xFF, record[index] ^ 0x08] where change != record[index] {
                    var changed = record
                    changed[index] = change
                    let full = Result { try ProjectedEvent(position: 1, decoding: changed[...]) }
                    var bytes: [UInt8] = []
                    let fast = Result { try changed.withUnsafeBytes { try FlatEvent(position: 1, record: $0, appendingTo: &bytes) } }
                    switch (full, fast) {
                    case (.failure(let a), .failure(let b)):
                        #expect("\(a)" == "\(b)", "byte \(index) set to \(change)")
                    case (.success(let expected), .success(.decoded(let got))):
                        #expect(got == expected, "byte \(index) set to \(change)")
                    case (.success(let expected), .success(.upload(let got))):
                        taken += 1
                        #expect(Self.projected(got, bytes) == expected, "byte \(index) set to \(change)")
                    default:
                        Issue.record("byte \(index) set to \(change): the full decoder gave \(full), the fast path \(fast)")
                    }
                }
            }
            // The unchanged record takes the fast path.
            var bytes: [UInt8] = []
            guard case .upload(let unchanged) = try record.withUnsafeBytes({ try FlatEvent(position: 1, record: $0, appendingTo: &bytes) }) else {
                Issue.record("\(event.type.name) did not take the fast path")
                continue
            }
            #expect(Self.projected(unchanged, bytes) == ProjectedEvent(try EventEnvelope(position: 1, decoding: record)))
            #expect(taken > 0)
        }
    }

    /// A part ending past the greatest offset the API takes would overflow the folds' byte counts
    /// (`lastByte + 1`): both decoders refuse it, as a damaged record, and take the greatest.
    @Test(arguments: [(UInt64(Int64.max), true), (UInt64(Int64.max) + 1, false), (UInt64.max, false)])
    func aPartEndingPastTheGreatestOffset_isRefusedByBothDecoders(lastByte: UInt64, decodes: Bool) throws {
        let metadata = RequestMetadata(requestId: "req-1", source: "test", userAgent: "ua", invocationId: "inv-1")
        let part = LayerPartUploaded(uploadId: "u1", registryId: "123456789012", repositoryName: "a/b", partFirstByte: 0, partLastByte: lastByte, partDigest: "sha256:p")
        let record = EventEnvelope(position: 1, recordedAt: .init(millisecondsSinceEpoch: 9), metadata: metadata, event: .layerPartUploaded(part)).encoded()
        let full = Result { try ProjectedEvent(position: 1, decoding: record[...]) }
        var bytes: [UInt8] = []
        let fast = Result { try record.withUnsafeBytes { try FlatEvent(position: 1, record: $0, appendingTo: &bytes) } }
        switch (full, fast) {
        case (.success, .success(.upload)): #expect(decodes)
        case (.failure(let a), .failure(let b)): #expect(!decodes); #expect("\(a)" == "\(b)")
        default: Issue.record("the full decoder gave \(full), the fast path \(fast)")
        }
    }

    /// The event the fast path read, as the full decoder makes it.
    static func projected(_ e: FlatUploadEvent, _ bytes: [UInt8]) -> ProjectedEvent {
        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        let (uploadId, registryId, repositoryName) = (text(e.uploadId), text(e.registryId), text(e.repositoryName))
        let event: Event = switch e.body {
        case .initiated(let partSize, let initiatedAt):
            .uploadInitiated(UploadInitiated(uploadId: uploadId, partSize: partSize, registryId: registryId, repositoryName: repositoryName, initiatedAt: initiatedAt))
        case .partUploaded(let first, let last, let digest):
            .layerPartUploaded(LayerPartUploaded(uploadId: uploadId, registryId: registryId, repositoryName: repositoryName, partFirstByte: first, partLastByte: last, partDigest: text(digest)))
        case .completed(let digest, let size):
            .layerUploadCompleted(LayerUploadCompleted(uploadId: uploadId, registryId: registryId, repositoryName: repositoryName, layerDigest: text(digest), layerSize: size))
        }
        let metadata = RequestMetadata(
            requestId: e.invocation.map { text($0.requestId) } ?? "-", source: "-", invocationId: e.invocation.map { text($0.invocationId) })
        return ProjectedEvent(EventEnvelope(position: e.position, recordedAt: e.recordedAt, metadata: metadata, event: event))
    }
}
