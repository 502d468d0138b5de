import PostgresKit
import UploadCore

/// The projection records a batch's commands will read, known before they are decided: each new
/// upload id's session (checked unused), the repository each initiation, part, completion,
/// cancel and PutImage names, the upload each part, completion and cancel names, and the blobs
/// and images each PutImage's manifest names, and the image it pushes. ``PostgresCommitter`` asks for them
/// in the round trip that begins the batch's transaction, so that deciding waits for fewer reads
/// of its own (two nodes taking turns start their caches afresh on almost every batch). Others (a
/// completion's layer, say) are still read when asked for.
struct BatchReads {
    private(set) var sessions: [[UInt8]] = []
    private(set) var repositories: [[UInt8]] = []
    /// A PutImage reads each blob its manifest names, one round trip apiece otherwise while the
    /// append lock is held (an image of ten layers: eleven).
    private(set) var layers: [[UInt8]] = []
    /// A PutImage reads the image it pushes (stored already?) and each image an index names.
    private(set) var images: [[UInt8]] = []
    /// Whether the batch sweeps idle uploads, which reads the session of every active upload:
    /// read in one query, not one round trip each while the append lock is held (24,000 active
    /// uploads held it for about 4.5 s, and every other node's writes with it).
    private(set) var everyActiveSession = false
    /// The repository prefixes of the batch's forced DeleteRepository commands, whose images' tags
    /// are read in one query each: each image's delete reads its tags, one round trip apiece
    /// otherwise, while the append lock is held (5,000 images: 390 → 1,106 ms).
    private(set) var tagsOfEveryImage: [[UInt8]] = []

    init(_ batch: [GroupCommitWriter.Pending], settings: DecisionSettings) {
        self.init(commands: batch.map { ($0.command, $0.uploadId) }, settings: settings)
    }

    /// - Parameter commands: each command, with the new upload id the writer gave it, if any.
    init(commands: [(command: Command, newUploadId: String?)], settings: DecisionSettings) {
        var seenSessions = Set<[UInt8]>(), seenRepositories = Set<[UInt8]>(), seenLayers = Set<[UInt8]>(), seenImages = Set<[UInt8]>()
        func session(_ id: String) {
            let key = ProjectionKey.session(id)
            if seenSessions.insert(key).inserted { sessions.append(key) }
        }
        @discardableResult
        func repository(_ registryId: String?, _ name: String) -> RepositoryRef? {
            // A registry id the command may not name is refused by the decider; nothing to read.
            guard let registryId = try? settings.resolveRegistry(registryId) else { return nil }
            let ref = RepositoryRef(registryId: registryId, repositoryName: name)
            let key = ProjectionKey.repository(ref)
            if seenRepositories.insert(key).inserted { repositories.append(key) }
            return ref
        }
        for (command, newUploadId) in commands {
            if let id = newUploadId { session(id) }
            switch command {
            case .initiateLayerUpload(let c): repository(c.registryId, c.repositoryName)
            case .uploadLayerPart(let c):
                repository(c.registryId, c.repositoryName)
                session(c.uploadId)
            case .completeLayerUpload(let c):
                repository(c.registryId, c.repositoryName)
                session(c.uploadId)
            case .cancelLayerUpload(let c):
                repository(c.upload.repository.registryId, c.upload.repository.repositoryName)
                session(c.upload.uploadId)
            case .putImage(let c):
                guard let ref = repository(c.registryId, c.repositoryName) else { continue }
                for digest in [c.config].compactMap({ $0?.digest }) + c.layers.map(\.digest) {
                    let key = ProjectionKey.scoped(ref, digest)
                    if seenLayers.insert(key).inserted { layers.append(key) }
                }
                for digest in [c.imageDigest] + c.referencedImages.map(\.digest) {
                    let key = ProjectionKey.scoped(ref, digest)
                    if seenImages.insert(key).inserted { images.append(key) }
                }
            case .expireIdleUploads: everyActiveSession = true
            case .deleteRepository(let c) where c.force:
                guard let registryId = try? settings.resolveRegistry(c.registryId) else { continue }
                let prefix = ProjectionKey.repositoryPrefix(RepositoryRef(registryId: registryId, repositoryName: c.repositoryName))
                if !tagsOfEveryImage.contains(prefix) { tagsOfEveryImage.append(prefix) }
            default: continue
            }
        }
    }

    /// Only the keys `cache` does not know; all of them when there is no cache to keep. (Ranges of
    /// keys are a batch's own reads, never kept: each batch reads them again.)
    func lacking(in cache: DecodedRecords?) -> BatchReads {
        guard let cache else { return self }
        var lacking = self
        lacking.sessions = sessions.filter { cache.records[DecodedRecords.Key(.sessions, $0)] == nil }
        lacking.repositories = repositories.filter { cache.records[DecodedRecords.Key(.repositories, $0)] == nil }
        lacking.layers = layers.filter { cache.records[DecodedRecords.Key(.layers, $0)] == nil }
        lacking.images = images.filter { cache.records[DecodedRecords.Key(.images, $0)] == nil }
        return lacking
    }

    /// One query per table with keys to read: sessions, repositories, layers, then images; then,
    /// for a sweep, the sessions of every active upload (a session is keyed by its upload id, as
    /// its active mark is).
    var queries: [PostgresConnection.Query] {
        [
            PostgresTables.recordsQuery(.sessions, keys: sessions), PostgresTables.recordsQuery(.repositories, keys: repositories),
            PostgresTables.recordsQuery(.layers, keys: layers), PostgresTables.recordsQuery(.images, keys: images),
            everyActiveSession ? Self.everyActiveSessionQuery : nil,
        ].compactMap { $0 } + tagsOfEveryImage.map { PostgresTables.keysQuery(.tagsByImage, prefix: $0) }
    }

    static let everyActiveSessionQuery = PostgresConnection.Query("""
        SELECT s.key, s.value FROM projection_entries a JOIN projection_entries s ON s.tbl = '\(ProjectionTable.sessions.rawValue)' AND s.key = a.key
        WHERE a.tbl = '\(ProjectionTable.activeUploads.rawValue)'
        """)

    /// Keeps the answers to ``queries`` (in their order) as the reads of `tables`' transaction.
    func note(_ answers: some Collection<PostgresRows>, in tables: PostgresTables) {
        var answer = answers.makeIterator()
        if !sessions.isEmpty, let rows = answer.next() { tables.noteRecords(.sessions, keys: sessions, found: rows, as: UploadSession.self) }
        if !repositories.isEmpty, let rows = answer.next() { tables.noteRecords(.repositories, keys: repositories, found: rows, as: RepositorySummary.self) }
        if !layers.isEmpty, let rows = answer.next() { tables.noteRecords(.layers, keys: layers, found: rows, as: LayerRecord.self) }
        if !images.isEmpty, let rows = answer.next() { tables.noteRecords(.images, keys: images, found: rows, as: ImageRecord.self) }
        if everyActiveSession, let rows = answer.next() {
            tables.noteRecords(.sessions, keys: (0..<rows.count).map { rows.bytes($0, 0) }, found: rows, as: UploadSession.self)
        }
        for prefix in tagsOfEveryImage {
            guard let rows = answer.next() else { return }
            tables.noteKeys(.tagsByImage, prefix: prefix, found: (0..<rows.count).map { rows.bytes($0, 0) })
        }
    }
}
