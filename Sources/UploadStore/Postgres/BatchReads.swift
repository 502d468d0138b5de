import PostgresKit
import UploadCore

/// The projection records a batch's commands will read, known before they are decided, so that
/// deciding waits for fewer reads of its own while the append lock is held (two nodes taking
/// turns start their caches afresh on almost every batch). ``PostgresCommitter`` asks for them in
/// the round trip that begins the batch's transaction, one query per table; the images that a
/// BatchDeleteImage's tags name, known once the tags are read, in one round trip more
/// (``imagesNamedByTags(in:)``). Others (a completion's layer, say) are still read when asked for.
struct BatchReads {
    /// Each new upload id's session (checked unused), and the upload each part, completion and
    /// cancel names.
    private(set) var sessions: [[UInt8]] = []
    /// The repository each initiation, part, completion, cancel, PutImage and BatchDeleteImage names.
    private(set) var repositories: [[UInt8]] = []
    /// Each blob a PutImage's manifest names (an image of ten layers: eleven round trips otherwise).
    private(set) var layers: [[UInt8]] = []
    /// The image each PutImage pushes (stored already?) and each image an index names; each image
    /// a BatchDeleteImage names by digest.
    private(set) var images: [[UInt8]] = []
    /// Each tag a BatchDeleteImage names.
    private(set) var tags: [[UInt8]] = []
    /// The images whose sets are read whole, each the prefix of its keys in both tables: its tags
    /// and the lists that name it (a delete reads both), one query per table for all of them.
    /// Ranges, never kept from batch to batch.
    private(set) var imageSets: [[UInt8]] = []
    /// Whether the batch sweeps idle uploads, which reads the session of every active upload:
    /// read in one query, not one round trip each while the append lock is held (24,000 active
    /// uploads held it for about 4.5 s, and every other node's writes with it).
    private(set) var everyActiveSession = false
    /// The repository prefixes of the batch's forced DeleteRepository commands, whose images' tags
    /// are read in one query each: each image's delete reads its tags, one round trip apiece
    /// otherwise, while the append lock is held (5,000 images: 390 → 1,106 ms).
    private(set) var tagsOfEveryImage: [[UInt8]] = []
    /// The tags of ``tags`` with their repositories, whose images ``imagesNamedByTags(in:)`` reads.
    private var taggedImages: [(ref: RepositoryRef, tag: [UInt8])] = []
    /// Every key and prefix above, by table, for reading each once.
    private var asked: Set<DecodedRecords.Key> = []

    private init() {}

    init(_ batch: [GroupCommitWriter.Pending], settings: DecisionSettings) {
        self.init(commands: batch.map { ($0.command, $0.uploadId) }, settings: settings)
    }

    /// - Parameter commands: each command, with the new upload id the writer gave it, if any.
    init(commands: [(command: Command, newUploadId: String?)], settings: DecisionSettings) {
        func repository(_ registryId: String?, _ name: String) -> RepositoryRef? {
            // A registry id the command may not name is refused by the decider; nothing to read.
            guard let registryId = try? settings.resolveRegistry(registryId) else { return nil }
            let ref = RepositoryRef(registryId: registryId, repositoryName: name)
            ask(.repositories, ProjectionKey.repository(ref), into: \.repositories)
            return ref
        }
        for (command, newUploadId) in commands {
            if let id = newUploadId { ask(.sessions, ProjectionKey.session(id), into: \.sessions) }
            switch command {
            case .initiateLayerUpload(let c): _ = repository(c.registryId, c.repositoryName)
            case .uploadLayerPart(let c):
                _ = repository(c.registryId, c.repositoryName)
                ask(.sessions, ProjectionKey.session(c.uploadId), into: \.sessions)
            case .completeLayerUpload(let c):
                _ = repository(c.registryId, c.repositoryName)
                ask(.sessions, ProjectionKey.session(c.uploadId), into: \.sessions)
            case .cancelLayerUpload(let c):
                _ = repository(c.upload.repository.registryId, c.upload.repository.repositoryName)
                ask(.sessions, ProjectionKey.session(c.upload.uploadId), into: \.sessions)
            case .putImage(let c):
                guard let ref = repository(c.registryId, c.repositoryName) else { continue }
                for blob in [c.config].compactMap({ $0 }) + c.layers { ask(.layers, ProjectionKey.scoped(ref, blob.digest), into: \.layers) }
                for digest in [c.imageDigest] + c.referencedImages.map(\.digest) { ask(.images, ProjectionKey.scoped(ref, digest), into: \.images) }
            case .batchDeleteImage(let c):
                guard let ref = repository(c.registryId, c.repositoryName) else { continue }
                for id in c.imageIds {
                    if let digest = id.imageDigest, Validation.isLayerDigest(digest) { askForImageAndSets(ref, digest.lowercased()) }
                    if let tag = id.imageTag, ask(.imageTags, ProjectionKey.scoped(ref, tag), into: \.tags) {
                        taggedImages.append((ref, ProjectionKey.scoped(ref, tag)))
                    }
                }
            case .expireIdleUploads: everyActiveSession = true
            case .deleteRepository(let c) where c.force:
                guard let registryId = try? settings.resolveRegistry(c.registryId) else { continue }
                let prefix = ProjectionKey.repositoryPrefix(RepositoryRef(registryId: registryId, repositoryName: c.repositoryName))
                ask(.tagsByImage, prefix, into: \.tagsOfEveryImage)
            default: continue
            }
        }
    }

    /// Adds `key` of `table` to `list` unless it was asked for already; whether it was added.
    @discardableResult
    private mutating func ask(_ table: ProjectionTable, _ key: [UInt8], into list: WritableKeyPath<BatchReads, [[UInt8]]>) -> Bool {
        guard asked.insert(DecodedRecords.Key(table, key)).inserted else { return false }
        self[keyPath: list].append(key)
        return true
    }

    /// An image's record, and its sets (its tags, the lists that name it), for its delete.
    private mutating func askForImageAndSets(_ ref: RepositoryRef, _ digest: String) {
        ask(.images, ProjectionKey.scoped(ref, digest), into: \.images)
        ask(.manifestListsByImage, ProjectionKey.scoped(ref, ProjectionKey.memberItem(digest, "")), into: \.imageSets)
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
        lacking.tags = tags.filter { cache.records[DecodedRecords.Key(.imageTags, $0)] == nil }
        return lacking
    }

    /// The reads of the images the batch's BatchDeleteImage tags name, once ``note(_:in:)`` has
    /// kept the tags in `tables`: each one's record (unless known) and sets (unless read above).
    func imagesNamedByTags(in tables: PostgresTables) -> BatchReads {
        var next = BatchReads()
        next.asked = asked
        for (ref, tag) in taggedImages {
            // A tag that is absent, or whose record does not decode, names nothing to read here
            // (the decider reads it again, and fails on it alone).
            guard tables.knows(.imageTags, tag), let digest = try? tables.record(.imageTags, tag, as: TagRecord.self)?.imageDigest else { continue }
            next.askForImageAndSets(ref, digest)
        }
        next.images = next.images.filter { !tables.knows(.images, $0) }
        return next
    }

    /// One query per table with keys to read: sessions, repositories, layers, images, then tags;
    /// then, for a sweep, the sessions of every active upload (a session is keyed by its upload
    /// id, as its active mark is); then the ranges: a forced delete's tags of every image, and the
    /// image sets' tags, then their lists.
    var queries: [PostgresConnection.Query] {
        [
            PostgresTables.recordsQuery(.sessions, keys: sessions), PostgresTables.recordsQuery(.repositories, keys: repositories),
            PostgresTables.recordsQuery(.layers, keys: layers), PostgresTables.recordsQuery(.images, keys: images),
            PostgresTables.recordsQuery(.imageTags, keys: tags),
            everyActiveSession ? Self.everyActiveSessionQuery : nil,
        ].compactMap { $0 } + tagsOfEveryImage.map { PostgresTables.keysQuery(.tagsByImage, prefix: $0) } + imageSetQueries
    }

    /// The image sets' two queries (their tags, then their lists), or none.
    private var imageSetQueries: [PostgresConnection.Query] {
        Self.imageSetTables.compactMap { PostgresTables.keysUnderEachQuery($0, prefixes: imageSets) }
    }

    private static let imageSetTables: [ProjectionTable] = [.tagsByImage, .manifestListsByImage]

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
        if !tags.isEmpty, let rows = answer.next() { tables.noteRecords(.imageTags, keys: tags, found: rows, as: TagRecord.self) }
        if everyActiveSession, let rows = answer.next() {
            tables.noteRecords(.sessions, keys: (0..<rows.count).map { rows.bytes($0, 0) }, found: rows, as: UploadSession.self)
        }
        for prefix in tagsOfEveryImage {
            guard let rows = answer.next() else { return }
            tables.noteKeys(.tagsByImage, prefix: prefix, found: (0..<rows.count).map { rows.bytes($0, 0) })
        }
        guard !imageSets.isEmpty else { return }  // both or neither query: every set's prefix ends at 0x00
        for table in Self.imageSetTables {
            guard let rows = answer.next() else { return }
            tables.noteKeys(table, under: imageSets, found: rows)
        }
    }
}
