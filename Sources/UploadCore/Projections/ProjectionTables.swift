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

/// Byte-level access to the projection tables. The live store implements it over an LMDB write
/// transaction and replay over memory, so both run the same ``Projector`` code.
///
/// Keys compare as unsigned bytes, as LMDB compares them.
public protocol ProjectionTables {
    func get(_ table: ProjectionTable, _ key: [UInt8]) throws -> [UInt8]?
    mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ value: [UInt8]) throws
    mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) throws
    /// Every key that starts with `prefix`, in byte order.
    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]]
}

/// The keys of each table, in one place.
public enum ProjectionKey {
    public static func session(_ uploadId: String) -> [UInt8] { Array(uploadId.utf8) }
    public static func repository(_ ref: RepositoryRef) -> [UInt8] { Array(ref.description.utf8) }
    public static func repositoryPrefix(_ ref: RepositoryRef) -> [UInt8] { repository(ref) + [0] }
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

    /// A key as a person reads it in a report: UTF-8 with the 0x00 separator shown as `|`.
    public static func readable(_ key: some Collection<UInt8>) -> String {
        String(decoding: key.map { $0 == 0 ? UInt8(ascii: "|") : $0 }, as: UTF8.self)
    }
}

extension ProjectionTables {
    public func session(_ uploadId: String) throws -> UploadSession? {
        try get(.sessions, ProjectionKey.session(uploadId)).map { try UploadSession(decoding: $0) }
    }

    public func repository(_ ref: RepositoryRef) throws -> RepositorySummary? {
        try get(.repositories, ProjectionKey.repository(ref)).map { try RepositorySummary(decoding: $0) }
    }

    /// The ids of the repository's active uploads, in byte order.
    public func activeUploads(in ref: RepositoryRef) throws -> [String] {
        let prefix = ProjectionKey.repositoryPrefix(ref)
        return try keys(in: .repositoryUploads, withPrefix: prefix).map {
            String(decoding: $0.dropFirst(prefix.count), as: UTF8.self)
        }
    }

    public func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord? {
        try get(.layers, ProjectionKey.scoped(ref, digest)).map { try LayerRecord(decoding: $0) }
    }

    public func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? {
        try get(.images, ProjectionKey.scoped(ref, digest)).map { try ImageRecord(decoding: $0) }
    }

    public func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord? {
        try get(.imageTags, ProjectionKey.scoped(ref, tag)).map { try TagRecord(decoding: $0) }
    }

    public func invocation(_ invocationId: String) throws -> InvocationRecord? {
        try get(.invocations, Array(invocationId.utf8)).map { try InvocationRecord(decoding: $0) }
    }

    mutating func put(_ session: UploadSession) throws {
        try put(.sessions, ProjectionKey.session(session.uploadId), session.encoded())
    }

    mutating func put(_ repository: RepositorySummary) throws {
        try put(.repositories, ProjectionKey.repository(repository.repository), repository.encoded())
    }
}

/// Projection tables held in memory: replay's scratch state, and the tests' reference model.
public struct InMemoryProjectionTables: ProjectionTables, Sendable {
    private var tables: [ProjectionTable: [[UInt8]: [UInt8]]] = [:]

    public init() {}

    public func get(_ table: ProjectionTable, _ key: [UInt8]) -> [UInt8]? { tables[table]?[key] }
    public mutating func put(_ table: ProjectionTable, _ key: [UInt8], _ value: [UInt8]) { tables[table, default: [:]][key] = value }
    public mutating func delete(_ table: ProjectionTable, _ key: [UInt8]) { tables[table]?[key] = nil }

    public func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) -> [[UInt8]] {
        (tables[table] ?? [:]).keys.filter { $0.starts(with: prefix) }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Every entry of `table` in key byte order: the order LMDB iterates in.
    public func entries(_ table: ProjectionTable) -> [(key: [UInt8], value: [UInt8])] {
        (tables[table] ?? [:]).map { ($0.key, $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
    }
}
