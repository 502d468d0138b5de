import UploadCore

/// The projection state as keyed tables of encoded records: how this store lays out what
/// ``MutableProjectionState`` means. LMDB (``LMDBTables``) implements the primitives; the
/// meaning is mapped onto keys here, with the key functions of ``ProjectionKey``. The states held in
/// memory (``InMemoryProjectionState``, replay's ``FlatProjectionState``) keep their own layouts and
/// make the same keys for the digest and for a rebuild's write.
///
/// Keys compare as unsigned bytes, as LMDB compares them.
protocol KeyedProjectionTables: MutableProjectionState {
    /// The record under `key`, as `type`; `nil` when there is none.
    func record<R: FieldRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R?
    mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some FieldRecord) throws
    mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) throws
    /// Every key that starts with `prefix`, in byte order.
    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]]
    /// Every entry whose key starts with `prefix`, in key byte order, its record as `type`.
    func entries<R: FieldRecord>(in table: ProjectionTable, withPrefix prefix: [UInt8], as type: R.Type) throws -> [(key: [UInt8], value: R)]
}

/// The value of an index entry that is keyed for appending (by time or id) rather than by
/// repository: the repository it belongs to, `registryId/repositoryName`.
@FieldRecord
struct RepositoryMark: FieldRecord {
    var repository: String

    init(_ ref: RepositoryRef) { repository = ref.description }

    func belongs(to ref: RepositoryRef) -> Bool { repository.sameBytes(as: ref.description) }

    enum FieldTag: UInt64 { case repository = 1 }
    static var recordName: String { "repositoryMark" }
}

/// The value of an entry of a set that each image has (``ProjectionTable/referrers``,
/// ``ProjectionTable/tagsByImage``, ``ProjectionTable/manifestListsByImage``): the member, the last
/// part of its key. Readers take it from the key; the value is kept as projection layout 9 laid out
/// the referrers'.
@FieldRecord
struct MemberMark: FieldRecord {
    var member: String

    init(_ member: String) { self.member = member }

    enum FieldTag: UInt64 { case member = 1 }
    static var recordName: String { "memberMark" }
}

extension KeyedProjectionTables {
    func session(_ uploadId: String) throws -> UploadSession? {
        try record(.sessions, ProjectionKey.session(uploadId), as: UploadSession.self)
    }

    func repository(_ ref: RepositoryRef) throws -> RepositorySummary? {
        try record(.repositories, ProjectionKey.repository(ref), as: RepositorySummary.self)
    }

    /// In key order: by upload id.
    func activeUploads(in ref: RepositoryRef) throws -> [String] {
        try entries(in: .activeUploads, withPrefix: [], as: RepositoryMark.self)
            .filter { $0.value.belongs(to: ref) }.map { String(decoding: $0.key, as: UTF8.self) }
    }

    /// In key order: by upload id.
    func allActiveUploads() throws -> [String] {
        try keys(in: .activeUploads, withPrefix: []).map { String(decoding: $0, as: UTF8.self) }
    }

    func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord? {
        try record(.layers, ProjectionKey.scoped(ref, digest), as: LayerRecord.self)
    }

    func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? {
        try record(.images, ProjectionKey.scoped(ref, digest), as: ImageRecord.self)
    }

    /// In key order: by digest.
    func imageDigests(in ref: RepositoryRef) throws -> [String] {
        try names(in: .images, of: ref)
    }

    func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord? {
        try record(.imageTags, ProjectionKey.scoped(ref, tag), as: TagRecord.self)
    }

    /// In key order: by tag.
    func tags(of digest: String, in ref: RepositoryRef) throws -> [String] {
        try members(in: .tagsByImage, of: digest, ref)
    }

    /// In key order: by digest.
    func manifestLists(naming digest: String, in ref: RepositoryRef) throws -> [String] {
        try members(in: .manifestListsByImage, of: digest, ref)
    }

    func details(_ ref: RepositoryRef) throws -> RepositoryDetails? {
        try record(.repositoryDetails, ProjectionKey.repository(ref), as: RepositoryDetails.self)
    }

    func registryCatalog(_ registryId: String) throws -> RegistryCatalog? {
        try record(.registries, Array(registryId.utf8), as: RegistryCatalog.self)
    }

    mutating func put(_ details: RepositoryDetails, of ref: RepositoryRef) throws {
        try put(.repositoryDetails, ProjectionKey.repository(ref), details)
    }

    mutating func removeDetails(of ref: RepositoryRef) throws {
        try delete(.repositoryDetails, ProjectionKey.repository(ref))
    }

    mutating func put(_ catalog: RegistryCatalog, of registryId: String) throws {
        try put(.registries, Array(registryId.utf8), catalog)
    }

    mutating func put(_ session: UploadSession) throws {
        try put(.sessions, ProjectionKey.session(session.uploadId), session)
    }

    mutating func put(_ repository: RepositorySummary) throws {
        try put(.repositories, ProjectionKey.repository(repository.repository), repository)
    }

    mutating func removeRepository(_ ref: RepositoryRef) throws {
        try delete(.repositories, ProjectionKey.repository(ref))
    }

    mutating func setUpload(_ uploadId: String, in ref: RepositoryRef, active: Bool) throws {
        let key = ProjectionKey.session(uploadId)
        if active { try put(.activeUploads, key, RepositoryMark(ref)) } else { try delete(.activeUploads, key) }
    }

    mutating func recordInitiation(in ref: RepositoryRef, at recordedAt: Timestamp, position: UInt64) throws {
        try put(.initiations, ProjectionKey.timeAndPosition(recordedAt, position), RepositoryMark(ref))
    }

    mutating func put(_ layer: LayerRecord, in ref: RepositoryRef) throws {
        try put(.layers, ProjectionKey.scoped(ref, layer.layerDigest), layer)
    }

    mutating func removeLayers(in ref: RepositoryRef) throws {
        for key in try keys(in: .layers, withPrefix: ProjectionKey.repositoryPrefix(ref)) { try delete(.layers, key) }
    }

    mutating func put(_ image: ImageRecord, in ref: RepositoryRef) throws {
        try put(.images, ProjectionKey.scoped(ref, image.imageDigest), image)
    }

    mutating func removeImage(_ digest: String, in ref: RepositoryRef) throws {
        try delete(.images, ProjectionKey.scoped(ref, digest))
    }

    mutating func put(_ tag: TagRecord, named name: String, in ref: RepositoryRef) throws {
        try put(.imageTags, ProjectionKey.scoped(ref, name), tag)
        try setMember(name, of: tag.imageDigest, in: .tagsByImage, ref, present: true)
    }

    mutating func removeTag(_ name: String, of digest: String, in ref: RepositoryRef) throws {
        try delete(.imageTags, ProjectionKey.scoped(ref, name))
        try setMember(name, of: digest, in: .tagsByImage, ref, present: false)
    }

    mutating func setReferrer(_ referrer: String, of subject: String, in ref: RepositoryRef, present: Bool) throws {
        try setMember(referrer, of: subject, in: .referrers, ref, present: present)
    }

    mutating func setManifestList(_ list: String, naming digest: String, in ref: RepositoryRef, present: Bool) throws {
        try setMember(list, of: digest, in: .manifestListsByImage, ref, present: present)
    }

    private mutating func setMember(_ member: String, of digest: String, in table: ProjectionTable, _ ref: RepositoryRef, present: Bool) throws {
        let key = ProjectionKey.scoped(ref, ProjectionKey.memberItem(digest, member))
        if present { try put(table, key, MemberMark(member)) } else { try delete(table, key) }
    }

    /// The members of the image `digest`'s set in `table`, in key order.
    private func members(in table: ProjectionTable, of digest: String, _ ref: RepositoryRef) throws -> [String] {
        let prefix = ProjectionKey.scoped(ref, ProjectionKey.memberItem(digest, ""))
        return try keys(in: table, withPrefix: prefix).map { String(decoding: $0.dropFirst(prefix.count), as: UTF8.self) }
    }

    mutating func put(_ mark: InvocationMark, at position: UInt64) throws {
        try put(.invocationMarks, BigEndian.bytes(position), mark)
    }

    /// The item parts (digests, tags, upload ids) of `table`'s keys under `ref`, in key order.
    private func names(in table: ProjectionTable, of ref: RepositoryRef) throws -> [String] {
        let prefix = ProjectionKey.repositoryPrefix(ref)
        return try keys(in: table, withPrefix: prefix).map { String(decoding: $0.dropFirst(prefix.count), as: UTF8.self) }
    }
}
