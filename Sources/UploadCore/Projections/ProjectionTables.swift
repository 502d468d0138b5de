import Crypto

/// The named tables the projections keep. Their names are the LMDB database names.
public enum ProjectionTable: String, Sendable, CaseIterable, Comparable {
    /// uploadId → ``UploadSession``: the current-upload-sessions view.
    case sessions = "sessions"
    /// `registryId/repositoryName` → ``RepositorySummary``: the per-repository view.
    case repositories = "repositories"
    /// `registryId/repositoryName` 0x00 uploadId → empty: the active uploads of each repository.
    case repositoryUploads = "repository-uploads"
    /// `registryId/repositoryName` 0x00 layerDigest → ``LayerRecord``: the layers available in a repository.
    case layers = "layers"
    /// `registryId/repositoryName` 0x00 imageDigest → ``ImageRecord``.
    case images = "images"
    /// `registryId/repositoryName` 0x00 imageTag → ``TagRecord``.
    case imageTags = "image-tags"
    /// recordedAt (8 bytes BE, ms) · position (8 bytes BE) → empty: every UploadInitiated in time order.
    case initiations = "initiations"
    /// `registryId/repositoryName` 0x00 · recordedAt · position → empty: the same, per repository.
    case repositoryInitiations = "repository-initiations"
    /// invocationId → ``InvocationRecord``: what each SDK call recorded, so a retry is answered
    /// with the original result.
    case invocations = "invocations"

    public static func < (a: ProjectionTable, b: ProjectionTable) -> Bool { a.rawValue < b.rawValue }
}

/// A value a projection table holds. Its encoding is what LMDB stores and what replay's digest
/// hashes, so it is defined once, here, for both.
public protocol ProjectionRecord: Sendable {
    init(decoding bytes: [UInt8]) throws(CodecError)
    func encoded() -> [UInt8]
}

extension UploadSession: ProjectionRecord {}
extension RepositorySummary: ProjectionRecord {}
extension LayerRecord: ProjectionRecord {}
extension ImageRecord: ProjectionRecord {}
extension TagRecord: ProjectionRecord {}
extension InvocationRecord: ProjectionRecord {}

/// The value of an index entry: empty, since the key says everything.
public struct IndexMark: ProjectionRecord, Equatable {
    public init() {}
    public init(decoding bytes: [UInt8]) throws(CodecError) {
        guard bytes.isEmpty else { throw CodecError("an index entry has \(bytes.count) bytes; it should have none") }
    }
    public func encoded() -> [UInt8] { [] }
}

/// Record-level access to the projection tables. The live store implements it over an LMDB write
/// transaction (encoding and decoding each record) and replay over memory (keeping the records
/// as values), so both run the same ``Projector`` code.
///
/// Keys compare as unsigned bytes, as LMDB compares them.
public protocol ProjectionTables {
    /// The record under `key`, as `type`; `nil` when there is none.
    func record<R: ProjectionRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R?
    mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some ProjectionRecord) throws
    mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) throws
    /// Every key that starts with `prefix`, in byte order.
    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]]
}

/// The keys of each table, in one place.
///
/// Every key of every value the API accepts must fit LMDB's 511 bytes: a repository's name is up to
/// 218 bytes with its registry, a tag up to 300. So a scoped key names a long repository by its
/// hash (see ``repositoryPrefix(_:)``).
public enum ProjectionKey {
    /// The longest repository key used as a scoped prefix as it is; longer ones are hashed.
    public static let longestPlainRepositoryKey = 160

    public static func session(_ uploadId: String) -> [UInt8] { Array(uploadId.utf8) }
    public static func repository(_ ref: RepositoryRef) -> [UInt8] { Array(ref.description.utf8) }

    /// The start of every key scoped to a repository: `registryId/name` and a 0x00 separator, or,
    /// when that is longer than ``longestPlainRepositoryKey``, 0xFF, the SHA-256 of it, and 0x00
    /// (34 bytes). Neither can be a prefix of the other: plain names start with a digit, and
    /// contain no 0x00. Scoped keys are read back by their part after the prefix, never parsed.
    public static func repositoryPrefix(_ ref: RepositoryRef) -> [UInt8] {
        let plain = repository(ref)
        guard plain.count > longestPlainRepositoryKey else { return plain + [0] }
        return [0xFF] + Array(SHA256.hash(data: plain)) + [0]
    }

    /// The upload id at the end of a ``repositoryUpload(_:_:)`` key (ids are 36 characters).
    public static func uploadId(inRepositoryUploadKey key: some Collection<UInt8>) -> String {
        String(decoding: key.suffix(36), as: UTF8.self)
    }
    public static func repositoryUpload(_ ref: RepositoryRef, _ uploadId: String) -> [UInt8] {
        repositoryPrefix(ref) + Array(uploadId.utf8)
    }

    /// The key of `item` (a layer digest, image digest or tag) under a repository.
    public static func scoped(_ ref: RepositoryRef, _ item: String) -> [UInt8] {
        repositoryPrefix(ref) + Array(item.utf8)
    }

    /// recordedAt and position, 16 bytes that sort by time, then position.
    public static func timeAndPosition(_ at: Timestamp, _ position: UInt64) -> [UInt8] {
        BigEndian.bytes(UInt64(bitPattern: at.millisecondsSinceEpoch)) + BigEndian.bytes(position)
    }

    /// Whether `a` sorts before `b` as LMDB compares keys: unsigned bytes, a prefix first.
    /// (The standard `lexicographicallyPrecedes` walks generic iterators: sorting a replay's
    /// digest entries with it took a quarter of `upload-replay verify` on a million events.)
    public static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                var i = 0
                while i < n {
                    if x[i] != y[i] { return x[i] < y[i] }
                    i += 1
                }
                return x.count < y.count
            }
        }
    }

    /// A key as a person reads it in a report: UTF-8 with the 0x00 separator shown as `|`.
    public static func readable(_ key: some Collection<UInt8>) -> String {
        String(decoding: key.map { $0 == 0 ? UInt8(ascii: "|") : $0 }, as: UTF8.self)
    }
}

extension ProjectionTables {
    public func session(_ uploadId: String) throws -> UploadSession? {
        try record(.sessions, ProjectionKey.session(uploadId), as: UploadSession.self)
    }

    public func repository(_ ref: RepositoryRef) throws -> RepositorySummary? {
        try record(.repositories, ProjectionKey.repository(ref), as: RepositorySummary.self)
    }

    /// The ids of the repository's active uploads, in byte order.
    public func activeUploads(in ref: RepositoryRef) throws -> [String] {
        let prefix = ProjectionKey.repositoryPrefix(ref)
        return try keys(in: .repositoryUploads, withPrefix: prefix).map {
            String(decoding: $0.dropFirst(prefix.count), as: UTF8.self)
        }
    }

    public func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord? {
        try record(.layers, ProjectionKey.scoped(ref, digest), as: LayerRecord.self)
    }

    public func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? {
        try record(.images, ProjectionKey.scoped(ref, digest), as: ImageRecord.self)
    }

    public func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord? {
        try record(.imageTags, ProjectionKey.scoped(ref, tag), as: TagRecord.self)
    }

    public func invocation(_ invocationId: String) throws -> InvocationRecord? {
        try record(.invocations, Array(invocationId.utf8), as: InvocationRecord.self)
    }

    mutating func put(_ session: UploadSession) throws {
        try put(.sessions, ProjectionKey.session(session.uploadId), session)
    }

    mutating func put(_ repository: RepositorySummary) throws {
        try put(.repositories, ProjectionKey.repository(repository.repository), repository)
    }
}

/// Projection tables held in memory: replay's scratch state, and the tests' reference model.
///
/// Records stay values, one dictionary per record type: nothing is encoded until
/// ``entries(_:)`` is asked for (replay's digest), so a rebuild spends its time folding events.
/// A look-up returns the record through `any ProjectionRecord` and one cast to `R`; casting the
/// concrete record to `R` directly measured slower (55k against 100k events/s on 20k events),
/// since the projector is not specialised across modules.
public struct InMemoryProjectionTables: ProjectionTables, Sendable {
    /// Key bytes hashed in one call (`[UInt8]`'s own hashing feeds the hasher a byte at a time).
    struct Key: Hashable, Sendable {
        let bytes: [UInt8]
        func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    }

    private var sessions: [Key: UploadSession] = [:]
    private var repositories: [Key: RepositorySummary] = [:]
    private var layers: [Key: LayerRecord] = [:]
    private var images: [Key: ImageRecord] = [:]
    private var tags: [Key: TagRecord] = [:]
    private var invocations: [Key: InvocationRecord] = [:]
    /// The index tables, whose values are all ``IndexMark``.
    private var marks: [ProjectionTable: Set<Key>] = [:]

    public init() {}

    public func record<R: ProjectionRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        let key = Key(bytes: key)
        let found: (any ProjectionRecord)? = switch table {
        case .sessions: sessions[key]
        case .repositories: repositories[key]
        case .layers: layers[key]
        case .images: images[key]
        case .imageTags: tags[key]
        case .invocations: invocations[key]
        case .repositoryUploads, .initiations, .repositoryInitiations: marks[table]?.contains(key) == true ? IndexMark() : nil
        }
        guard let found else { return nil }
        guard let record = found as? R else {
            throw CodecError("table \(table.rawValue) holds a \(Swift.type(of: found)), not a \(R.self)")
        }
        return record
    }

    public mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some ProjectionRecord) throws {
        let key = Key(bytes: key)
        switch table {
        case .sessions: sessions[key] = try Self.cast(record, table)
        case .repositories: repositories[key] = try Self.cast(record, table)
        case .layers: layers[key] = try Self.cast(record, table)
        case .images: images[key] = try Self.cast(record, table)
        case .imageTags: tags[key] = try Self.cast(record, table)
        case .invocations: invocations[key] = try Self.cast(record, table)
        case .repositoryUploads, .initiations, .repositoryInitiations:
            _ = try Self.cast(record, table) as IndexMark
            marks[table, default: []].insert(key)
        }
    }

    public mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) {
        let key = Key(bytes: key)
        switch table {
        case .sessions: sessions[key] = nil
        case .repositories: repositories[key] = nil
        case .layers: layers[key] = nil
        case .images: images[key] = nil
        case .imageTags: tags[key] = nil
        case .invocations: invocations[key] = nil
        case .repositoryUploads, .initiations, .repositoryInitiations: marks[table]?.remove(key)
        }
    }

    public func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) -> [[UInt8]] {
        let keys: [Key] = switch table {
        case .sessions: Array(sessions.keys)
        case .repositories: Array(repositories.keys)
        case .layers: Array(layers.keys)
        case .images: Array(images.keys)
        case .imageTags: Array(tags.keys)
        case .invocations: Array(invocations.keys)
        case .repositoryUploads, .initiations, .repositoryInitiations: Array(marks[table] ?? [])
        }
        return keys.map(\.bytes).filter { $0.starts(with: prefix) }.sorted(by: ProjectionKey.precedes)
    }

    /// Every entry of `table`, encoded, in key byte order: the order and bytes LMDB holds.
    public func entries(_ table: ProjectionTable) -> [(key: [UInt8], value: [UInt8])] {
        func encoded(_ records: [Key: some ProjectionRecord]) -> [(key: [UInt8], value: [UInt8])] {
            records.map { ($0.key.bytes, $0.value.encoded()) }
        }
        let entries: [(key: [UInt8], value: [UInt8])] = switch table {
        case .sessions: encoded(sessions)
        case .repositories: encoded(repositories)
        case .layers: encoded(layers)
        case .images: encoded(images)
        case .imageTags: encoded(tags)
        case .invocations: encoded(invocations)
        case .repositoryUploads, .initiations, .repositoryInitiations: (marks[table] ?? []).map { ($0.bytes, []) }
        }
        return entries.sorted { ProjectionKey.precedes($0.key, $1.key) }
    }

    private static func cast<R>(_ record: some ProjectionRecord, _ table: ProjectionTable) throws -> R {
        guard let typed = record as? R else {
            throw CodecError("table \(table.rawValue) holds \(R.self) records, not \(type(of: record))")
        }
        return typed
    }
}
