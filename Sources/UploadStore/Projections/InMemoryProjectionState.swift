import UploadCore

/// The projection state held in memory, typed: the tests' reference model for the decider and for
/// replay's flat fold, and where replay's flat state keeps images and tags (few events touch them).
///
/// It keeps what ``MutableProjectionState`` means, not LMDB's keys: each record is a value in a
/// dictionary keyed by what names it, so a fold builds no key bytes, boxes no record and casts
/// nothing. Keys and encoded values are made only for the digest and for writing a rebuild out
/// (``forEachEntry(_:_:)``), with the store's own key functions (``ProjectionKey``), so the bytes
/// are LMDB's.
///
/// Names are compared and hashed by their UTF-8 bytes, as LMDB compares keys.
struct InMemoryProjectionState: MutableProjectionState, ProjectionEntries, Sendable {
    private var sessions: [ExactString: UploadSession] = [:]
    private var repositories: [ExactRepository: RepositorySummary] = [:]
    private var activeUploads: [ExactString: RepositoryRef] = [:]
    private var layers: [ExactRepository: [ExactString: LayerRecord]] = [:]
    private var images: [ExactRepository: [ExactString: ImageRecord]] = [:]
    private var tags: [ExactRepository: [ExactString: TagRecord]] = [:]
    private var referrers = ImageMemberSets()
    private var tagsByImage = ImageMemberSets()
    private var manifestListsByImage = ImageMemberSets()
    /// In key order (time, then position). The writer never records a time before the log's last,
    /// so a put normally appends; one out of order is still placed by its key.
    private var initiations = OrderedRecords<RepositoryMark>()
    /// In key order (position): a put appends.
    private var invocationMarks = OrderedRecords<InvocationMark>()
    private var details: [ExactRepository: RepositoryDetails] = [:]
    private var registries: [ExactString: RegistryCatalog] = [:]

    init() {}

    // MARK: ProjectionState

    func session(_ uploadId: String) -> UploadSession? { sessions[ExactString(uploadId)] }

    func repository(_ ref: RepositoryRef) -> RepositorySummary? { repositories[ExactRepository(ref)] }

    func activeUploads(in ref: RepositoryRef) -> [String] {
        Self.inByteOrder(activeUploads.compactMap { $0.value.sameBytes(as: ref) ? $0.key : nil })
    }

    func allActiveUploads() -> [String] { Self.inByteOrder(Array(activeUploads.keys)) }

    func layer(_ ref: RepositoryRef, _ digest: String) -> LayerRecord? { layers[ExactRepository(ref)]?[ExactString(digest)] }

    func image(_ ref: RepositoryRef, _ digest: String) -> ImageRecord? { images[ExactRepository(ref)]?[ExactString(digest)] }

    func imageDigests(in ref: RepositoryRef) -> [String] { Self.inByteOrder(Array(images[ExactRepository(ref), default: [:]].keys)) }

    func tag(_ ref: RepositoryRef, _ tag: String) -> TagRecord? { tags[ExactRepository(ref)]?[ExactString(tag)] }

    func tags(of digest: String, in ref: RepositoryRef) -> [String] { tagsByImage.members(of: digest, in: ref) }

    func manifestLists(naming digest: String, in ref: RepositoryRef) -> [String] { manifestListsByImage.members(of: digest, in: ref) }

    func details(_ ref: RepositoryRef) -> RepositoryDetails? { details[ExactRepository(ref)] }

    func registryCatalog(_ registryId: String) -> RegistryCatalog? { registries[ExactString(registryId)] }

    // MARK: MutableProjectionState

    mutating func put(_ session: UploadSession) { sessions[ExactString(session.uploadId)] = session }

    mutating func put(_ repository: RepositorySummary) { repositories[ExactRepository(repository.repository)] = repository }

    mutating func removeRepository(_ ref: RepositoryRef) { repositories[ExactRepository(ref)] = nil }

    mutating func setUpload(_ uploadId: String, in ref: RepositoryRef, active: Bool) {
        activeUploads[ExactString(uploadId)] = active ? ref : nil
    }

    mutating func recordInitiation(in ref: RepositoryRef, at recordedAt: Timestamp, position: UInt64) {
        initiations[ProjectionKey.timeAndPosition(recordedAt, position)] = RepositoryMark(ref)
    }

    mutating func put(_ layer: LayerRecord, in ref: RepositoryRef) {
        layers[ExactRepository(ref), default: [:]][ExactString(layer.layerDigest)] = layer
    }

    mutating func removeLayers(in ref: RepositoryRef) { layers[ExactRepository(ref)] = nil }

    mutating func put(_ image: ImageRecord, in ref: RepositoryRef) {
        images[ExactRepository(ref), default: [:]][ExactString(image.imageDigest)] = image
    }

    mutating func removeImage(_ digest: String, in ref: RepositoryRef) {
        images[ExactRepository(ref)]?[ExactString(digest)] = nil
    }

    mutating func put(_ tag: TagRecord, named name: String, in ref: RepositoryRef) {
        tags[ExactRepository(ref), default: [:]][ExactString(name)] = tag
        tagsByImage.set(name, of: tag.imageDigest, in: ref, present: true)
    }

    mutating func removeTag(_ name: String, of digest: String, in ref: RepositoryRef) {
        tags[ExactRepository(ref)]?[ExactString(name)] = nil
        tagsByImage.set(name, of: digest, in: ref, present: false)
    }

    mutating func setReferrer(_ referrer: String, of subject: String, in ref: RepositoryRef, present: Bool) {
        referrers.set(referrer, of: subject, in: ref, present: present)
    }

    mutating func setManifestList(_ list: String, naming digest: String, in ref: RepositoryRef, present: Bool) {
        manifestListsByImage.set(list, of: digest, in: ref, present: present)
    }

    mutating func put(_ mark: InvocationMark, at position: UInt64) { invocationMarks[BigEndian.bytes(position)] = mark }

    mutating func put(_ details: RepositoryDetails, of ref: RepositoryRef) { self.details[ExactRepository(ref)] = details }

    mutating func removeDetails(of ref: RepositoryRef) { details[ExactRepository(ref)] = nil }

    mutating func put(_ catalog: RegistryCatalog, of registryId: String) { registries[ExactString(registryId)] = catalog }

    // MARK: The digest's view

    func forEachEntry(_ table: ProjectionTable, _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void) rethrows {
        func emit(_ key: [UInt8], _ value: [UInt8]) throws {
            try key.withUnsafeBytes { key in try value.withUnsafeBytes { try body(key, $0) } }
        }
        func keyed<Name, R: FieldRecord>(_ records: [Name: R], _ key: (Name) -> [UInt8]) throws {
            let sorted = records.map { (key: key($0.key), record: $0.value) }.sorted { ProjectionKey.precedes($0.key, $1.key) }
            for entry in sorted { try emit(entry.key, entry.record.encoded()) }
        }
        func scoped<R: FieldRecord>(_ records: [ExactRepository: [ExactString: R]]) throws {
            var entries: [(key: [UInt8], record: R)] = []
            for (repository, items) in records {
                let prefix = ProjectionKey.repositoryPrefix(repository.value)
                for (name, record) in items { entries.append((prefix + Array(name.value.utf8), record)) }
            }
            for entry in entries.sorted(by: { ProjectionKey.precedes($0.key, $1.key) }) { try emit(entry.key, entry.record.encoded()) }
        }
        switch table {
        case .sessions: try keyed(sessions) { ProjectionKey.session($0.value) }
        case .repositories: try keyed(repositories) { ProjectionKey.repository($0.value) }
        case .activeUploads: try keyed(activeUploads.mapValues(RepositoryMark.init)) { ProjectionKey.session($0.value) }
        case .layers: try scoped(layers)
        case .images: try scoped(images)
        case .imageTags: try scoped(tags)
        case .referrers: try scoped(referrers.entries)
        case .tagsByImage: try scoped(tagsByImage.entries)
        case .manifestListsByImage: try scoped(manifestListsByImage.entries)
        case .initiations: try initiations.forEachInOrder(emit)
        case .invocationMarks: try invocationMarks.forEachInOrder(emit)
        case .repositoryDetails: try keyed(details) { ProjectionKey.repository($0.value) }
        case .registries: try keyed(registries) { Array($0.value.utf8) }
        }
    }

    private static func inByteOrder(_ names: [ExactString]) -> [String] {
        names.map { Array($0.value.utf8) }.sorted(by: ProjectionKey.precedes).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A set that each image of a repository has (its referrers, its tags, the lists that name it),
/// by image: one image's members are read without looking at any other's.
struct ImageMemberSets: Sendable {
    private var sets: [ExactRepository: [ExactString: Set<ExactString>]] = [:]

    /// In byte order.
    func members(of digest: String, in ref: RepositoryRef) -> [String] {
        (sets[ExactRepository(ref)]?[ExactString(digest)] ?? []).map { Array($0.value.utf8) }.sorted(by: ProjectionKey.precedes)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    mutating func set(_ member: String, of digest: String, in ref: RepositoryRef, present: Bool) {
        let repository = ExactRepository(ref), image = ExactString(digest)
        if present {
            sets[repository, default: [:]][image, default: []].insert(ExactString(member))
        } else if var members = sets[repository]?[image] {
            members.remove(ExactString(member))
            sets[repository]?[image] = members.isEmpty ? nil : members
        }
    }

    /// Each member by the item part of its key (``ProjectionKey/memberItem(_:_:)``), as the keyed
    /// tables hold it: for the digest's view, which sorts them.
    var entries: [ExactRepository: [ExactString: MemberMark]] {
        sets.mapValues { images in
            var entries: [ExactString: MemberMark] = [:]
            for (image, members) in images {
                for member in members { entries[ExactString(ProjectionKey.memberItem(image.value, member.value))] = MemberMark(member.value) }
            }
            return entries
        }
    }
}

/// A projection state that lists its entries as LMDB holds them: each table's keys
/// (``ProjectionKey``, as ``KeyedProjectionTables`` lays them out) and encoded records, in key byte
/// order. The digest hashes these, and a full rebuild writes them.
protocol ProjectionEntries: Sendable {
    /// Hands each entry of `table` to `body` in turn, encoding each record only when its turn
    /// comes: the digest holds no list of every encoded record (a million of them cost it more in
    /// page faults than in hashing).
    func forEachEntry(_ table: ProjectionTable, _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void) rethrows
}

extension ProjectionEntries {
    /// Every entry of `table`, as ``forEachEntry(_:_:)`` hands them over.
    func entries(_ table: ProjectionTable) -> [(key: [UInt8], value: [UInt8])] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        forEachEntry(table) { entries.append((Array($0), Array($1))) }
        return entries
    }
}
