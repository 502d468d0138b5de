import LogHashing
import PostgresKit
import UploadCore

/// One snapshot of a PostgreSQL store, for ``PostgresStore/read(_:)``: a `REPEATABLE READ READ
/// ONLY` transaction, in which the log and the projections were committed together.
struct PostgresSnapshot: StoreSnapshot {
    let connection: PostgresConnection
    /// Whether the projections are read as empty at position 0 (``UnreadableProjections/readAsEmpty``:
    /// a reader of the log alone, whose projections are of another layout than this binary's).
    var projectionsReadAsEmpty = false
    /// Why the projections may not be read in this snapshot: another binary rebuilt them in its
    /// layout (``PostgresReader/inSnapshot(_:_:)``). The log is still read.
    var projectionsRefused: StoreError?
    private var tables: PostgresTables? { get throws { try readsNoProjections() ? nil : PostgresTables(connection: connection) } }

    /// Whether the projections are read as empty; throws when they are refused.
    private func readsNoProjections() throws -> Bool {
        if let projectionsRefused { throw projectionsRefused }
        return projectionsReadAsEmpty
    }

    func lastPosition() throws -> UInt64 { try PostgresLog.lastPosition(connection) ?? 0 }
    func checkpoint() throws -> UInt64 { try readsNoProjections() ? 0 : try PostgresProjectionState.read(connection).position }
    func events(after position: UInt64, limit: Int) throws -> [EventEnvelope] { try PostgresLog.events(connection, after: position, limit: limit) }
    func eventRecords(from position: UInt64, count: Int, byteBudget: Int) throws -> [[UInt8]] {
        try PostgresLog.records(connection, from: position, count: count, byteBudget: byteBudget)
    }
    func merkleNode(level: UInt8, index: UInt64) throws -> [UInt8] { try PostgresLog.merkleNode(connection, level: level, index: index) }
    func merkleNodes(level: UInt8, indices: Range<UInt64>) throws -> [[UInt8]] { try PostgresLog.merkleNodes(connection, level: level, indices: indices) }
    func merkleNodes(at coordinates: [MerkleTree.NodeCoordinate]) throws -> [[UInt8]] { try PostgresLog.merkleNodes(connection, at: coordinates) }
    func latestSignedCheckpoint() throws -> SignedCheckpoint? { try PostgresLog.latestSignedCheckpoint(connection) }
    func signedCheckpoints() throws -> [SignedCheckpoint] { try PostgresLog.signedCheckpoints(connection) }

    func session(_ uploadId: String) throws -> UploadSession? { try tables?.session(uploadId) }
    func repository(_ ref: RepositoryRef) throws -> RepositorySummary? { try tables?.repository(ref) }
    func activeUploads(in ref: RepositoryRef) throws -> [String] { try tables?.activeUploads(in: ref) ?? [] }
    func allActiveUploads() throws -> [String] { try tables?.allActiveUploads() ?? [] }
    func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord? { try tables?.layer(ref, digest) }
    func layers(_ digest: String, in repositories: [RepositoryRef]) throws -> [LayerRecord?] {
        guard try tables != nil else { return repositories.map { _ in nil } }
        let keys = repositories.map { ProjectionKey.scoped($0, digest) }
        let stored = try PostgresTables.storedValues(connection, .layers, keys)
        return try keys.map { key in try stored[key].map { try LayerRecord(decoding: $0) } }
    }
    func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? { try tables?.image(ref, digest) }
    func imageDigests(in ref: RepositoryRef) throws -> [String] { try tables?.imageDigests(in: ref) ?? [] }
    func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord? { try tables?.tag(ref, tag) }
    func tags(of digest: String, in ref: RepositoryRef) throws -> [String] { try tables?.tags(of: digest, in: ref) ?? [] }
    func manifestLists(naming digest: String, in ref: RepositoryRef) throws -> [String] { try tables?.manifestLists(naming: digest, in: ref) ?? [] }
    func details(_ ref: RepositoryRef) throws -> RepositoryDetails? { try tables?.details(ref) }
    func registryCatalog(_ registryId: String) throws -> RegistryCatalog? { try tables?.registryCatalog(registryId) }

    func repositories(in registryId: String, after name: String?, limit: Int) throws -> [RepositorySummary] {
        try page(.repositories, prefix: Array("\(registryId)/".utf8), after: name, limit: limit).map { try RepositorySummary(decoding: $0.value) }
    }

    // The manifests still come over the network, but are never decoded: a query cannot cut a field out.
    func imagesWithoutManifests(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [ImageRecord] {
        try page(.images, prefix: ProjectionKey.repositoryPrefix(ref), after: digest, limit: limit).map {
            try ImageRecord(decoding: $0.value.withUnsafeBytes(ImageRecord.withoutManifest))
        }
    }

    func imageWithoutManifest(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord? {
        guard try !readsNoProjections(), let value = try PostgresTables.storedValue(connection, .images, ProjectionKey.scoped(ref, digest)) else { return nil }
        return try ImageRecord(decoding: value.withUnsafeBytes(ImageRecord.withoutManifest))
    }

    func imagesWithoutManifests(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?] {
        try storedImages(ref, digests) { try ImageRecord(decoding: $0.withUnsafeBytes(ImageRecord.withoutManifest)) }
    }

    func images(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?] {
        try storedImages(ref, digests) { try ImageRecord(decoding: $0) }
    }

    /// The stored record of each of `digests`, in their order, in one query, each decoded by `decode`.
    private func storedImages(_ ref: RepositoryRef, _ digests: [String], _ decode: ([UInt8]) throws -> ImageRecord) throws -> [ImageRecord?] {
        guard try !readsNoProjections() else { return digests.map { _ in nil } }
        let keys = digests.map { ProjectionKey.scoped(ref, $0) }
        let stored = try PostgresTables.storedValues(connection, .images, keys)
        return try keys.map { key in try stored[key].map(decode) }
    }

    func tags(_ ref: RepositoryRef, _ names: [String]) throws -> [TagRecord?] {
        guard try !readsNoProjections() else { return names.map { _ in nil } }
        let keys = names.map { ProjectionKey.scoped(ref, $0) }
        let stored = try PostgresTables.storedValues(connection, .imageTags, keys)
        return try keys.map { key in try stored[key].map { try TagRecord(decoding: $0) } }
    }

    func tags(of digests: [String], in ref: RepositoryRef) throws -> [[String]] {
        guard try !readsNoProjections() else { return digests.map { _ in [] } }
        let prefixes = digests.map { ProjectionKey.scoped(ref, ProjectionKey.memberItem($0, "")) }
        // No query for no images, nor for a prefix with no end (none of these: each holds a 0x00).
        guard let query = PostgresTables.keysUnderEachQuery(.tagsByImage, prefixes: prefixes) else { return try digests.map { try tags(of: $0, in: ref) } }
        let rows = try connection.query(query.sql, query.parameters)
        var found = prefixes.map { _ in [String]() }
        for row in 0..<rows.count {
            let place = Int(try rows.int64(row, 0)) - 1
            guard found.indices.contains(place), rows.bytes(row, 1).starts(with: prefixes[place]) else {
                throw StoreError(.corrupt, "PostgreSQL answered a query of the tags of \(digests.count) images with a key outside them")
            }
            found[place].append(String(decoding: rows.bytes(row, 1).dropFirst(prefixes[place].count), as: UTF8.self))
        }
        return found
    }

    func tags(in ref: RepositoryRef, after tag: String?, limit: Int) throws -> [(name: String, record: TagRecord)] {
        let prefix = ProjectionKey.repositoryPrefix(ref)
        return try page(.imageTags, prefix: prefix, after: tag, limit: limit).map {
            (String(decoding: $0.key.dropFirst(prefix.count), as: UTF8.self), try TagRecord(decoding: $0.value))
        }
    }

    func imageTags(in ref: RepositoryRef, from first: String, through last: String) throws -> [(digest: String, tag: String)] {
        guard try !readsNoProjections() else { return [] }
        let prefixCount = ProjectionKey.repositoryPrefix(ref).count
        let (lower, upper) = ProjectionKey.memberRange(ref, from: first, through: last)
        return try PostgresTables.stored(connection, .tagsByImage, from: lower, before: upper).map { key in
            let entry = ProjectionKey.member(key.dropFirst(prefixCount))
            return (entry.digest, entry.member)
        }
    }

    func referrers(of subject: String, in ref: RepositoryRef, after referrer: String?, limit: Int) throws -> [String] {
        let prefix = ProjectionKey.scoped(ref, ProjectionKey.memberItem(subject, ""))
        return try page(.referrers, prefix: prefix, after: referrer, limit: limit).map { String(decoding: $0.key.dropFirst(prefix.count), as: UTF8.self) }
    }

    func initiationMarks(since: Timestamp?, until: Timestamp?) throws -> [(position: UInt64, repository: String)] {
        guard try !readsNoProjections() else { return [] }
        var entries: [(key: [UInt8], value: [UInt8])] = []
        var after = since.map(ProjectionKey.timesFrom)
        while true {
            let page = try PostgresTables.stored(connection, .initiations, prefix: [], after: after, limit: 10_000)
            entries += page
            let pastUntil = until.map { until in page.last.map { Int64(bitPattern: BigEndian.uint64($0.key.prefix(8)) ?? 0) >= until.millisecondsSinceEpoch } ?? false } ?? false
            guard page.count == 10_000, !pastUntil else { break }
            after = page.last!.key
        }
        return try Self.initiationMarks(entries, until: until)
    }

    func newestInitiationMarks(before cursor: StoreCursor?, limit: Int) throws -> [InitiationMark] {
        guard limit > 0, try !readsNoProjections() else { return [] }
        return try PostgresTables.storedNewestFirst(connection, .initiations, before: cursor?.key, limit: limit).map(InitiationMark.init)
    }

    func layers(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, layer: LayerRecord)] {
        guard limit > 0, try !readsNoProjections() else { return [] }
        return try PostgresTables.stored(connection, .layers, prefix: [], after: cursor?.key, limit: limit)
            .map { (StoreCursor(key: $0.key), try LayerRecord(decoding: $0.value)) }
    }

    func layers(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [LayerRecord] {
        try page(.layers, prefix: ProjectionKey.repositoryPrefix(ref), after: digest, limit: limit).map { try LayerRecord(decoding: $0.value) }
    }

    func repositoryLogos(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, logo: String?)] {
        guard limit > 0, try !readsNoProjections() else { return [] }
        return try PostgresTables.stored(connection, .repositoryDetails, prefix: [], after: cursor?.key, limit: limit)
            .map { (StoreCursor(key: $0.key), try RepositoryDetails(decoding: $0.value).logoImageDigest) }
    }

    /// Up to `limit` entries under `prefix` after the key `prefix + after`, in key order.
    private func page(_ table: ProjectionTable, prefix: [UInt8], after: String?, limit: Int) throws -> [(key: [UInt8], value: [UInt8])] {
        guard limit > 0, try !readsNoProjections() else { return [] }
        return try PostgresTables.stored(connection, table, prefix: prefix, after: after.map { prefix + Array($0.utf8) }, limit: limit)
    }
}
