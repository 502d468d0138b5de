import UploadCore

/// Replay's projection state, flat and typed: every upload, digest and repository is a number
/// (``NameTable``), and the records of the tables the hot events touch are structs in arrays
/// indexed by those numbers, changed in place. No record holds a `String` until the digest or a
/// rebuild's write asks for its entries (``forEachEntry(_:_:)``), which make the same keys and
/// bytes as the live tables (``ProjectionKey``, the records' own encoding).
///
/// It is a ``MutableProjectionState``, so ``Projector`` folds every event into it; the three events
/// of an upload's way (nearly all of a log) also have a fold of their own over their bytes
/// (``apply(_:in:)``, in `FlatFold.swift`), which must change the state exactly as ``Projector``
/// does. It is read-only work's state (replay, `upload-replay verify`): live tables are only ever
/// written through ``Projector``, so verify's comparison of this state with them checks the two
/// folds against each other on every run.
struct FlatProjectionState: MutableProjectionState, ProjectionEntries, Sendable {
    /// An upload's number indexes `sessions` and `activeIn`.
    var uploadIds = NameTable()
    var sessions: [FlatSession?] = []
    /// The repository whose active uploads hold the upload, or -1.
    var activeIn: [Int32] = []
    var digests = NameTable()
    /// `registryId/repositoryName`, the repositories table's key; a repository's number indexes
    /// `repositoryRefs` and `repositories`.
    var repositoryKeys = NameTable()
    var repositoryRefs: [RepositoryRef] = []
    var repositories: [RepositorySummary?] = []
    /// (repository << 32 | digest) → index in `layers`. Read by key only, never iterated into a result.
    var layerIndex: [UInt64: Int] = [:]
    var layers: [FlatLayer?] = []
    /// The layers' media types (few, and repeated), by number.
    var mediaTypes = NameTable()
    /// In key order: time, then position.
    var initiations: [FlatInitiation] = []
    /// In position order.
    var marks: [FlatMark] = []
    var markBytes: [UInt8] = []
    /// Images, tags and the sets each image has, which few events touch, kept as the typed in-memory state keeps them.
    var catalogue = InMemoryProjectionState()

    init() {}

    // MARK: ProjectionState

    func session(_ uploadId: String) -> UploadSession? { uploadIds.find(uploadId).flatMap(session(number:)) }

    func repository(_ ref: RepositoryRef) -> RepositorySummary? { repositoryNumber(ref).flatMap { repositories[$0] } }

    func activeUploads(in ref: RepositoryRef) -> [String] {
        guard let repository = repositoryNumber(ref) else { return [] }
        return activeUploadNumbers { $0 == repository }.map(uploadIds.string)
    }

    func allActiveUploads() -> [String] { activeUploadNumbers { _ in true }.map(uploadIds.string) }

    func layer(_ ref: RepositoryRef, _ digest: String) -> LayerRecord? {
        guard let repository = repositoryNumber(ref), let digest = digests.find(digest) else { return nil }
        return layerSlot(repository, digest).flatMap { layers[$0] }.map(layerRecord)
    }

    func image(_ ref: RepositoryRef, _ digest: String) -> ImageRecord? { catalogue.image(ref, digest) }

    func imageDigests(in ref: RepositoryRef) -> [String] { catalogue.imageDigests(in: ref) }

    func tag(_ ref: RepositoryRef, _ tag: String) -> TagRecord? { catalogue.tag(ref, tag) }

    func tags(of digest: String, in ref: RepositoryRef) -> [String] { catalogue.tags(of: digest, in: ref) }

    func manifestLists(naming digest: String, in ref: RepositoryRef) -> [String] { catalogue.manifestLists(naming: digest, in: ref) }

    func details(_ ref: RepositoryRef) -> RepositoryDetails? { catalogue.details(ref) }

    func registryCatalog(_ registryId: String) -> RegistryCatalog? { catalogue.registryCatalog(registryId) }

    // MARK: MutableProjectionState

    mutating func put(_ session: UploadSession) {
        let upload = internUpload(session.uploadId)
        sessions[upload] = FlatSession(
            repository: Int32(internRepository(session.repository)), state: session.state, partSize: session.partSize,
            initiatedAt: session.initiatedAt, initiatedPosition: session.initiatedPosition,
            lastActivityAt: session.lastActivityAt, lastPosition: session.lastPosition, bytesReceived: session.bytesReceived,
            partCount: session.partCount, lastPartFirstByte: session.lastPartFirstByte, lastPartLastByte: session.lastPartLastByte,
            lastPartDigest: session.lastPartDigest.map { Int32(digests.intern($0)) } ?? -1,
            hasSmallNonFinalPart: session.hasSmallNonFinalPart,
            layerDigest: session.layerDigest.map { Int32(digests.intern($0)) } ?? -1)
    }

    mutating func put(_ repository: RepositorySummary) { repositories[internRepository(repository.repository)] = repository }

    mutating func removeRepository(_ ref: RepositoryRef) {
        if let repository = repositoryNumber(ref) { repositories[repository] = nil }
    }

    mutating func setUpload(_ uploadId: String, in ref: RepositoryRef, active: Bool) {
        let upload = internUpload(uploadId)
        activeIn[upload] = active ? Int32(internRepository(ref)) : -1
    }

    mutating func recordInitiation(in ref: RepositoryRef, at recordedAt: Timestamp, position: UInt64) {
        recordInitiation(FlatInitiation(time: recordedAt.millisecondsSinceEpoch, position: position, repository: Int32(internRepository(ref))))
    }

    mutating func put(_ layer: LayerRecord, in ref: RepositoryRef) {
        let repository = internRepository(ref), digest = digests.intern(layer.layerDigest)
        let record = FlatLayer(
            repository: Int32(repository), digest: Int32(digest), upload: Int32(internUpload(layer.uploadId)),
            layerSize: layer.layerSize, completedAt: layer.completedAt, mediaType: layer.mediaType.map { Int32(mediaTypes.intern($0)) } ?? -1)
        if let slot = layerSlot(repository, digest) {
            layers[slot] = record
        } else {
            layerIndex[Self.layerKey(repository, digest)] = layers.count
            layers.append(record)
        }
    }

    mutating func removeLayers(in ref: RepositoryRef) {
        guard let repository = repositoryNumber(ref) else { return }
        // The result is the same whatever order the keys come in.
        for (key, slot) in layerIndex where key >> 32 == UInt64(repository) {
            layers[slot] = nil
            layerIndex[key] = nil
        }
    }

    mutating func put(_ image: ImageRecord, in ref: RepositoryRef) { catalogue.put(image, in: ref) }

    mutating func removeImage(_ digest: String, in ref: RepositoryRef) { catalogue.removeImage(digest, in: ref) }

    mutating func put(_ tag: TagRecord, named name: String, in ref: RepositoryRef) { catalogue.put(tag, named: name, in: ref) }

    mutating func removeTag(_ name: String, of digest: String, in ref: RepositoryRef) { catalogue.removeTag(name, of: digest, in: ref) }

    mutating func setReferrer(_ referrer: String, of subject: String, in ref: RepositoryRef, present: Bool) {
        catalogue.setReferrer(referrer, of: subject, in: ref, present: present)
    }

    mutating func setManifestList(_ list: String, naming digest: String, in ref: RepositoryRef, present: Bool) {
        catalogue.setManifestList(list, naming: digest, in: ref, present: present)
    }

    mutating func put(_ details: RepositoryDetails, of ref: RepositoryRef) { catalogue.put(details, of: ref) }

    mutating func removeDetails(of ref: RepositoryRef) { catalogue.removeDetails(of: ref) }

    mutating func put(_ catalog: RegistryCatalog, of registryId: String) { catalogue.put(catalog, of: registryId) }

    mutating func put(_ mark: InvocationMark, at position: UInt64) {
        var invocationId = mark.invocationId, requestId = mark.requestId
        invocationId.withUTF8 { invocation in
            requestId.withUTF8 { request in
                putMark(at: position, recordedAt: mark.recordedAt, UnsafeRawBufferPointer(invocation), UnsafeRawBufferPointer(request))
            }
        }
    }

    // MARK: Numbers and records

    func repositoryNumber(_ ref: RepositoryRef) -> Int? {
        ProjectionKey.repository(ref).withUnsafeBytes { repositoryKeys.find($0) }
    }

    func layerSlot(_ repository: Int, _ digest: Int) -> Int? { layerIndex[Self.layerKey(repository, digest)] }

    static func layerKey(_ repository: Int, _ digest: Int) -> UInt64 { UInt64(repository) << 32 | UInt64(digest) }

    mutating func internUpload(_ uploadId: String) -> Int { makeRoomForUpload(uploadIds.intern(uploadId)) }

    /// Grows the arrays indexed by upload to hold `upload`, a number just interned.
    mutating func makeRoomForUpload(_ upload: Int) -> Int {
        if upload == sessions.count {
            sessions.append(nil)
            activeIn.append(-1)
        }
        return upload
    }

    mutating func internRepository(_ ref: RepositoryRef) -> Int {
        let repository = ProjectionKey.repository(ref).withUnsafeBytes { repositoryKeys.intern($0) }
        if repository == repositoryRefs.count {
            repositoryRefs.append(ref)
            repositories.append(nil)
        }
        return repository
    }

    mutating func recordInitiation(_ initiation: FlatInitiation) {
        // The writer never records a time before the log's last, so this nearly always appends.
        guard let last = initiations.last, !last.precedes(initiation) else { return initiations.append(initiation) }
        var low = 0, high = initiations.count
        while low < high {
            let mid = (low + high) / 2
            if initiations[mid].precedes(initiation) { low = mid + 1 } else { high = mid }
        }
        if low < initiations.count, !initiation.precedes(initiations[low]) {
            initiations[low] = initiation
        } else {
            initiations.insert(initiation, at: low)
        }
    }

    mutating func putMark(at position: UInt64, recordedAt: Timestamp, _ invocationId: UnsafeRawBufferPointer, _ requestId: UnsafeRawBufferPointer) {
        let start = markBytes.count
        markBytes.append(contentsOf: invocationId)
        markBytes.append(contentsOf: requestId)
        let mark = FlatMark(
            position: position, recordedAt: recordedAt, start: start, invocationIdCount: invocationId.count, requestIdCount: requestId.count)
        // Positions only grow in a fold, so this appends; a mark at a position already marked replaces it.
        guard let last = marks.last, last.position >= position else { return marks.append(mark) }
        var low = 0, high = marks.count
        while low < high {
            let mid = (low + high) / 2
            if marks[mid].position < position { low = mid + 1 } else { high = mid }
        }
        if low < marks.count, marks[low].position == position { marks[low] = mark } else { marks.insert(mark, at: low) }
    }

    func session(number upload: Int) -> UploadSession? {
        guard let s = sessions[upload] else { return nil }
        let ref = repositoryRefs[Int(s.repository)]
        return UploadSession(
            restoring: uploadIds.string(upload), registryId: ref.registryId, repositoryName: ref.repositoryName,
            partSize: s.partSize, state: s.state, initiatedAt: s.initiatedAt, initiatedPosition: s.initiatedPosition,
            lastActivityAt: s.lastActivityAt, lastPosition: s.lastPosition, bytesReceived: s.bytesReceived,
            partCount: s.partCount, lastPartFirstByte: s.lastPartFirstByte, lastPartLastByte: s.lastPartLastByte,
            lastPartDigest: s.lastPartDigest >= 0 ? digests.string(Int(s.lastPartDigest)) : nil,
            hasSmallNonFinalPart: s.hasSmallNonFinalPart,
            layerDigest: s.layerDigest >= 0 ? digests.string(Int(s.layerDigest)) : nil)
    }

    func layerRecord(_ layer: FlatLayer) -> LayerRecord {
        LayerRecord(
            restoring: digests.string(Int(layer.digest)), layerSize: layer.layerSize, uploadId: uploadIds.string(Int(layer.upload)),
            completedAt: layer.completedAt, mediaType: layer.mediaType >= 0 ? mediaTypes.string(Int(layer.mediaType)) : nil)
    }

    /// The uploads whose active repository passes `include`, in their ids' byte order.
    private func activeUploadNumbers(_ include: (Int) -> Bool) -> [Int] {
        activeIn.indices.filter { activeIn[$0] >= 0 && include(Int(activeIn[$0])) }.sorted(by: uploadIds.precedes)
    }

    /// Whether `other` holds exactly this state, compared directly: what verify asks of its two
    /// rebuilds instead of hashing both. The names' tables compare by their bytes and the order they
    /// were interned in, which the log fixes, so two folds of one log agree here whenever they
    /// agree at all; what holds names as strings (the repositories' refs, and the repository,
    /// image and tag records) compares by bytes too, as the digest would.
    func holdsSameState(as other: FlatProjectionState) -> Bool {
        func sameEntries(_ table: ProjectionTable) -> Bool {
            entries(table).elementsEqual(other.entries(table)) { $0.key == $1.key && $0.value == $1.value }
        }
        return uploadIds == other.uploadIds && digests == other.digests && repositoryKeys == other.repositoryKeys
            && sessions == other.sessions && activeIn == other.activeIn && layerIndex == other.layerIndex && layers == other.layers
            && mediaTypes == other.mediaTypes  // what the layers' media-type numbers name
            && initiations == other.initiations && marks == other.marks && markBytes == other.markBytes
            // A key names its ref only if no registry id holds a `/`, which a log's record may.
            && repositoryRefs.elementsEqual(other.repositoryRefs) { a, b in
                a.registryId.utf8.elementsEqual(b.registryId.utf8) && a.repositoryName.utf8.elementsEqual(b.repositoryName.utf8)
            }
            && ProjectionTable.allCases.filter { !Self.tablesComparedAsArrays.contains($0) }.allSatisfy(sameEntries)
    }

    /// The tables ``holdsSameState(as:)`` compares through the arrays that hold them; every other
    /// table is compared entry by entry, so that a table added later cannot be left out (the
    /// repository details and the registries once were, and verify then took a second rebuild
    /// that differed in them for the first).
    private static let tablesComparedAsArrays: Set<ProjectionTable> = [.sessions, .activeUploads, .layers, .initiations, .invocationMarks]

    // MARK: The digest's view

    /// Each entry is made in one reused key buffer and one reused writer: the digest and a rebuild's
    /// write allocate nothing per entry but the strings a record needs (none for the invocation
    /// marks, a million of them in a million-event log).
    func forEachEntry(_ table: ProjectionTable, _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void) rethrows {
        var key: [UInt8] = [], writer = FieldWriter()
        func emit(key makeKey: (inout [UInt8]) -> Void, value: (inout FieldWriter) -> Void) throws {
            key.removeAll(keepingCapacity: true)
            makeKey(&key)
            writer.removeAll()
            value(&writer)
            try key.withUnsafeBytes { key in try writer.bytes.withUnsafeBytes { try body(key, $0) } }
        }
        func mark(_ repository: Int32) -> (inout FieldWriter) -> Void { { RepositoryMark(repositoryRefs[Int(repository)]).encode(into: &$0) } }
        func name(_ table: NameTable, _ n: Int) -> (inout [UInt8]) -> Void { { key in table.withName(n) { key.append(contentsOf: $0) } } }
        switch table {
        case .sessions:
            let rank = uploadIds.byteOrderRanks()
            for upload in sessions.indices.filter({ sessions[$0] != nil }).sorted(by: { rank[$0] < rank[$1] }) {
                try emit(key: name(uploadIds, upload)) { session(number: upload)!.encode(into: &$0) }
            }
        case .repositories:
            for repository in repositories.indices.filter({ repositories[$0] != nil }).sorted(by: repositoryKeys.precedes) {
                try emit(key: name(repositoryKeys, repository)) { repositories[repository]!.encode(into: &$0) }
            }
        case .activeUploads:
            for upload in activeUploadNumbers({ _ in true }) { try emit(key: name(uploadIds, upload), value: mark(activeIn[upload])) }
        case .layers:
            // A scoped key is the repository's prefix, then the digest. Prefixes end in 0x00, which no
            // name holds, so none is a prefix of another: key order is prefix order, then digest order.
            let prefixes = repositoryRefs.map(ProjectionKey.repositoryPrefix)
            var rank = [Int](repeating: 0, count: prefixes.count)
            for (position, repository) in prefixes.indices.sorted(by: { ProjectionKey.precedes(prefixes[$0], prefixes[$1]) }).enumerated() {
                rank[repository] = position
            }
            let digestRank = digests.byteOrderRanks()
            let ordered = layers.indices.compactMap { slot in
                layers[slot].map { (order: UInt64(rank[Int($0.repository)]) << 32 | UInt64(digestRank[Int($0.digest)]), slot: slot) }
            }.sorted { $0.order < $1.order }.map(\.slot)
            for slot in ordered {
                let layer = layers[slot]!
                try emit(key: { key in key += prefixes[Int(layer.repository)]; digests.withName(Int(layer.digest)) { key.append(contentsOf: $0) } }) {
                    layerRecord(layer).encode(into: &$0)
                }
            }
        case .images, .imageTags, .referrers, .tagsByImage, .manifestListsByImage, .repositoryDetails, .registries:
            try catalogue.forEachEntry(table, body)
        case .initiations:
            for i in initiations {
                try emit(key: { $0 += ProjectionKey.timeAndPosition(Timestamp(millisecondsSinceEpoch: i.time), i.position) }, value: mark(i.repository))
            }
        case .invocationMarks:
            try markBytes.withUnsafeBytes { bytes in
                for m in marks {
                    let invocationEnd = m.start + m.invocationIdCount
                    try emit(key: { key in withUnsafeBytes(of: m.position.bigEndian) { key.append(contentsOf: $0) } }) {
                        InvocationMark.encode(
                            invocationId: UnsafeRawBufferPointer(rebasing: bytes[m.start..<invocationEnd]),
                            requestId: UnsafeRawBufferPointer(rebasing: bytes[invocationEnd..<invocationEnd + m.requestIdCount]),
                            recordedAt: m.recordedAt, into: &$0)
                    }
                }
            }
        }
    }
}

/// An ``UploadSession`` with its names as numbers.
struct FlatSession: Sendable, Equatable {
    var repository: Int32
    var state: UploadSession.State
    var partSize: UInt64
    var initiatedAt: Timestamp
    var initiatedPosition: UInt64
    var lastActivityAt: Timestamp
    var lastPosition: UInt64
    var bytesReceived: UInt64
    var partCount: UInt64
    var lastPartFirstByte: UInt64?
    var lastPartLastByte: UInt64?
    var lastPartDigest: Int32
    var hasSmallNonFinalPart: Bool
    var layerDigest: Int32
}

/// A ``LayerRecord`` with its names as numbers.
struct FlatLayer: Sendable, Equatable {
    var repository: Int32
    var digest: Int32
    var upload: Int32
    var layerSize: UInt64
    var completedAt: Timestamp
    /// A number of `mediaTypes`, or -1 for none.
    var mediaType: Int32 = -1
}

/// An entry of the initiations index, ordered as its key is: time, then position.
struct FlatInitiation: Sendable, Equatable {
    var time: Int64
    var position: UInt64
    var repository: Int32

    /// By the key's bytes: the time's bit pattern as an unsigned number (as ``ProjectionKey`` writes it), then the position.
    func precedes(_ other: FlatInitiation) -> Bool {
        (UInt64(bitPattern: time), position) < (UInt64(bitPattern: other.time), other.position)
    }
}

/// An ``InvocationMark`` whose two ids sit one after the other in the state's `markBytes`.
struct FlatMark: Sendable, Equatable {
    var position: UInt64
    var recordedAt: Timestamp
    var start: Int
    var invocationIdCount: Int
    var requestIdCount: Int
}
