import LMDBKit
public import UploadCore

/// A read snapshot of each environment, for ``Store/read(_:)``: the log's (`txn`) and the
/// projections' (`projections`, begun first, so the log holds everything they reflect).
public struct StoreReader: StoreSnapshot {
    let txn: Transaction
    let schema: Schema
    private let projectionSnapshot: Transaction
    let projectionSchema: ProjectionSchema
    /// Why the projections may not be read in this snapshot: another binary rebuilt them in its
    /// layout while this one has the store open (``ProjectionCheckpoint/otherLayout(_:_:)``).
    private let projectionsRefused: StoreError?

    init(txn: Transaction, schema: Schema, projections: Transaction, projectionSchema: ProjectionSchema) throws {
        self.txn = txn
        self.schema = schema
        projectionSnapshot = projections
        self.projectionSchema = projectionSchema
        projectionsRefused = try ProjectionCheckpoint.otherLayout(projections, projectionSchema)
    }

    /// The projections' snapshot, refused when they are of another binary's layout, which this one
    /// would misread; the log is still read.
    var projections: Transaction {
        get throws {
            if let projectionsRefused { throw projectionsRefused }
            return projectionSnapshot
        }
    }

    var tables: LMDBTables { get throws { LMDBTables(txn: try projections, schema: projectionSchema) } }

    public func lastPosition() throws -> UInt64 { try EventLog.lastPosition(txn, schema) }

    public func checkpoint() throws -> UInt64 { try ProjectionCheckpoint.read(projections, projectionSchema).position }

    public func events(after position: UInt64 = 0, limit: Int = .max) throws -> [EventEnvelope] {
        var events: [EventEnvelope] = []
        guard limit > 0 else { return events }
        try EventLog.scan(txn, schema, after: position) { envelope in
            events.append(envelope)
            return events.count < limit
        }
        return events
    }

    public func eventRecords(from position: UInt64, count: Int, byteBudget: Int) throws -> [[UInt8]] {
        var records: [[UInt8]] = [], bytes = 0
        guard count > 0 else { return records }
        try txn.scan(schema.events, from: BigEndian.bytes(position)) { key, value in
            guard BigEndian.uint64(key) == position + UInt64(records.count) else { return false }
            records.append(Array(value))
            bytes += value.count
            return records.count < count && bytes < byteBudget
        }
        return records
    }

    public func merkleNode(level: UInt8, index: UInt64) throws -> [UInt8] { try MerkleLog.node(txn, schema, level, index) }

    public func latestSignedCheckpoint() throws -> SignedCheckpoint? { try SignedCheckpoint.latest(txn, schema) }
    public func signedCheckpoints() throws -> [SignedCheckpoint] { try SignedCheckpoint.all(txn, schema) }

    // The projection state, as the decider reads it.
    public func session(_ uploadId: String) throws -> UploadSession? { try tables.session(uploadId) }
    public func repository(_ ref: RepositoryRef) throws -> RepositorySummary? { try tables.repository(ref) }
    public func activeUploads(in ref: RepositoryRef) throws -> [String] { try tables.activeUploads(in: ref) }
    public func allActiveUploads() throws -> [String] { try tables.allActiveUploads() }
    public func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord? { try tables.layer(ref, digest) }
    public func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? { try tables.image(ref, digest) }
    public func imageDigests(in ref: RepositoryRef) throws -> [String] { try tables.imageDigests(in: ref) }
    public func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord? { try tables.tag(ref, tag) }
    public func tags(of digest: String, in ref: RepositoryRef) throws -> [String] { try tables.tags(of: digest, in: ref) }
    public func manifestLists(naming digest: String, in ref: RepositoryRef) throws -> [String] { try tables.manifestLists(naming: digest, in: ref) }
    public func details(_ ref: RepositoryRef) throws -> RepositoryDetails? { try tables.details(ref) }
    public func registryCatalog(_ registryId: String) throws -> RegistryCatalog? { try tables.registryCatalog(registryId) }

    public func repositories(in registryId: String, after name: String?, limit: Int) throws -> [RepositorySummary] {
        try page(.repositories, prefix: Array("\(registryId)/".utf8), after: name, limit: limit).map { try RepositorySummary(decoding: $0.value) }
    }

    public func imagesWithoutManifests(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [ImageRecord] {
        try page(.images, prefix: ProjectionKey.repositoryPrefix(ref), after: digest, limit: limit, value: ImageRecord.withoutManifest)
            .map { try ImageRecord(decoding: $0.value) }
    }

    public func imageWithoutManifest(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? {
        var bytes: [UInt8]?
        try projections.withValue(projectionSchema.database(.images), ProjectionKey.scoped(ref, digest)) { bytes = ImageRecord.withoutManifest($0) }
        return try bytes.map { try ImageRecord(decoding: $0) }
    }

    public func tags(in ref: RepositoryRef, after tag: String?, limit: Int) throws -> [(name: String, record: TagRecord)] {
        try page(.imageTags, prefix: ProjectionKey.repositoryPrefix(ref), after: tag, limit: limit).map { ($0.name, try TagRecord(decoding: $0.value)) }
    }

    public func imageTags(in ref: RepositoryRef, from first: String, through last: String) throws -> [(digest: String, tag: String)] {
        let prefixCount = ProjectionKey.repositoryPrefix(ref).count
        let (lower, upper) = ProjectionKey.memberRange(ref, from: first, through: last)
        var tags: [(digest: String, tag: String)] = []
        try projections.scan(projectionSchema.database(.tagsByImage), from: lower) { key, _ in
            guard ProjectionKey.precedes(Array(key), upper) else { return false }
            let entry = ProjectionKey.member(key.dropFirst(prefixCount))
            tags.append((entry.digest, entry.member))
            return true
        }
        return tags
    }

    public func referrers(of subject: String, in ref: RepositoryRef, after referrer: String?, limit: Int) throws -> [String] {
        try page(.referrers, prefix: ProjectionKey.scoped(ref, ProjectionKey.memberItem(subject, "")), after: referrer, limit: limit).map(\.name)
    }

    public func initiationMarks(since: Timestamp?, until: Timestamp?) throws -> [(position: UInt64, repository: String)] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        let start = since.map(ProjectionKey.timesFrom) ?? []
        try projections.scan(projectionSchema.database(.initiations), from: start) { key, value in
            if let until, key.count == 16, Int64(bitPattern: BigEndian.uint64(key.prefix(8)) ?? 0) >= until.millisecondsSinceEpoch { return false }
            entries.append((Array(key), Array(value)))
            return true
        }
        return try Self.initiationMarks(entries, until: until)
    }

    public func newestInitiationMarks(before cursor: StoreCursor?, limit: Int) throws -> [InitiationMark] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return [] }
        try projections.scanBackward(projectionSchema.database(.initiations), before: cursor?.key) { key, value in
            entries.append((Array(key), Array(value)))
            return entries.count < limit
        }
        return try entries.map(InitiationMark.init)
    }

    public func layers(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, layer: LayerRecord)] {
        try entries(.layers, afterKey: cursor?.key, limit: limit).map { (StoreCursor(key: $0.key), try LayerRecord(decoding: $0.value)) }
    }

    public func layers(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [LayerRecord] {
        try page(.layers, prefix: ProjectionKey.repositoryPrefix(ref), after: digest, limit: limit).map { try LayerRecord(decoding: $0.value) }
    }

    public func repositoryLogos(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, logo: String?)] {
        try entries(.repositoryDetails, afterKey: cursor?.key, limit: limit).map {
            (StoreCursor(key: $0.key), try RepositoryDetails(decoding: $0.value).logoImageDigest)
        }
    }

    /// Up to `limit` entries of `table` whose keys start with `prefix`, after the key
    /// `prefix + after` when given, in key order; each with its key's part after the prefix.
    /// - Parameter value: what of each value to keep, read where it lies in the map (all of it unless told).
    private func page(
        _ table: ProjectionTable, prefix: [UInt8], after: String?, limit: Int, value keep: (UnsafeRawBufferPointer) -> [UInt8] = { Array($0) }
    ) throws -> [(name: String, value: [UInt8])] {
        var entries: [(name: String, value: [UInt8])] = []
        guard limit > 0 else { return entries }
        let start = prefix + Array((after ?? "").utf8)
        try projections.scan(projectionSchema.database(table), from: start) { key, value in
            guard key.starts(with: prefix) else { return false }
            let name = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
            if let after, name.sameBytes(as: after) { return true }  // not `==`, which equates canonically equivalent text
            entries.append((name, keep(value)))
            return entries.count < limit
        }
        return entries
    }

    /// Up to `limit` entries of `table` after the key `after` (from the first when `nil`), in byte
    /// order, keys as stored: for walking a whole table, whose keys need not be text.
    func entries(_ table: ProjectionTable, afterKey after: [UInt8]?, limit: Int) throws -> [(key: [UInt8], value: [UInt8])] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return entries }
        try projections.scan(projectionSchema.database(table), from: after) { key, value in
            if let after, key.elementsEqual(after) { return true }
            entries.append((Array(key), Array(value)))
            return entries.count < limit
        }
        return entries
    }

    /// How many entries `table` holds. - Complexity: O(1).
    func count(_ table: ProjectionTable) throws -> Int { try projections.count(projectionSchema.database(table)) }
}
