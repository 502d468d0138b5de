import Foundation
public import LMDBKit
import UploadMigrations
public import UploadCore

/// An upload-coordinator store: the event log and its projections in one LMDB environment, with
/// one group-committing writer.
///
/// Open one `Store` per data directory per process and share it. Commands go through
/// ``execute(_:metadata:)``; reads run against one consistent snapshot in ``read(_:)``.
/// Another process may open the same directory: LMDB serialises their write transactions, and
/// each transaction continues from the log's true tail, so positions are never reused.
public final class Store: Sendable {
    public let configuration: StoreConfiguration
    let environment: Environment
    let schema: Schema
    private let writer: GroupCommitWriter
    private let notifier = CommitNotifier()

    /// Opens (creating if needed) the store in `configuration.directory`, applies pending
    /// migrations, and brings the projections up to the log's tail.
    /// - Throws: ``StoreError`` with code `.migration` when the store was written by a newer binary,
    ///   or needs migrations and `migrateOnOpen` is off.
    public init(_ configuration: StoreConfiguration) throws {
        self.configuration = configuration
        environment = try Environment(directory: configuration.directory, configuration: configuration.environment)
        let migrator = UploadMigrations.migrator
        let status = try environment.read { try migrator.status($0) }
        switch status {
        case .current: break
        case .superseded(let unknown): throw StoreError(.migration, MigrationError.superseded(unknown).description)
        case .pending(let pending):
            guard configuration.migrateOnOpen else {
                throw StoreError(.migration, MigrationError.pending(pending).description)
            }
            do { try migrator.migrate(environment) } catch let error as MigrationError {
                throw StoreError(.migration, error.description)
            }
        }
        schema = try environment.read { try Schema($0) }
        try ProjectionCatchUp.run(environment, schema)
        let schema = self.schema
        notifier.committed(upTo: try environment.read { try EventLog.tail($0, schema)?.position ?? 0 })
        writer = GroupCommitWriter(environment: environment, schema: schema, configuration: configuration, notifier: notifier)
    }

    /// Decides `command`, appends its events and updates the projections, all in the writer's next
    /// transaction. Returns the committed events once that transaction is durable.
    /// - Throws: ``CommandError`` when the command is refused (nothing is written), or
    ///   ``StoreError`` when the store could not write it.
    public func execute(_ command: Command, metadata: RequestMetadata) async throws -> CommandOutcome {
        try await writer.submit(command, metadata: metadata)
    }

    /// Decides `command` against the current snapshot without writing anything, so that a front
    /// end can refuse a request before doing I/O for it (staging bytes, hashing). The writer
    /// decides again when the command is executed; this only saves work.
    /// - Throws: the ``CommandError`` the command would be refused with now.
    /// - Returns: the decision as it would be now.
    @discardableResult
    public func preflight(_ command: Command) throws -> Decision {
        try read { reader in
            let context = DecisionContext(now: configuration.clock.now(), newUploadId: command.startsUpload ? "preflight" : nil)
            return try Decider.decide(command, state: reader.tables, settings: configuration.settings, context: context)
        }
    }

    /// Starts a layer upload. - Returns: the new upload's id and part size.
    public func initiateLayerUpload(
        _ command: InitiateLayerUpload, metadata: RequestMetadata
    ) async throws -> (uploadId: String, partSize: UInt64) {
        let outcome = try await execute(.initiateLayerUpload(command), metadata: metadata)
        guard case .uploadInitiated(let initiated)? = outcome.events.first?.event else {
            throw StoreError(.corrupt, "InitiateLayerUpload recorded no UploadInitiated")
        }
        return (initiated.uploadId, initiated.partSize)
    }

    /// What an earlier attempt of the same SDK call recorded (by `amz-sdk-invocation-id`), so that a
    /// front end can answer a retry without redoing its I/O. `nil` for a call not seen before.
    public func recordedOutcome(of command: Command, _ metadata: RequestMetadata) throws -> CommandOutcome? {
        try environment.read { txn in try CommandOutcome.recorded(command, metadata, txn, schema) }
    }

    /// Runs `body` against one consistent snapshot of the log and projections.
    public func read<T>(_ body: (StoreReader) throws -> T) throws -> T {
        try environment.read { txn in try body(StoreReader(txn: txn, schema: schema)) }
    }

    /// Writes every queued command, then stops the writer. Later commands fail with `.closed`.
    /// The environment itself closes when the last reference to the store goes.
    public func close() async {
        await writer.shutdown()
        notifier.close()
    }

    /// Waits until an event after `position` commits in this process, or `timeout` passes (so
    /// that a follower also sees what another process appended; it reads the log again then).
    /// - Returns: `false` when followers were stopped or the task was cancelled: stop following.
    public func waitForEvents(after position: UInt64, timeout: Duration = .seconds(1)) async -> Bool {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.notifier.wait(after: position) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return !notifier.isClosed && !Task.isCancelled
    }

    /// Whether ``stopFollowers()`` was called (or the store closed): live feeds end.
    public var followersStopped: Bool { notifier.isClosed }

    /// Stops every ``waitForEvents(after:)`` at once (graceful shutdown of live feeds).
    public func stopFollowers() { notifier.close() }

    /// Figures for monitoring, read from one snapshot.
    public func statistics() throws -> StoreStatistics {
        let usage = environment.usage()
        return try read { reader in
            let position = try reader.lastPosition()
            return StoreStatistics(
                logPosition: position, checkpointLag: position - min(position, try reader.checkpoint()),
                activeSessions: try reader.count(.repositoryUploads),
                mapSizeBytes: usage.mapSize, mapUsedBytes: usage.usedBytes, readers: usage.readers)
        }
    }

    /// Reader slots left by killed processes that opening this store released (`mdb_reader_check`).
    public var staleReadersCleared: Int { environment.staleReadersCleared }

    /// Holds a read transaction open until `release` returns; for testing what a process killed
    /// in the middle of a read leaves behind.
    public func holdingSnapshot<T>(_ release: () throws -> T) throws -> T {
        try environment.read { _ in try release() }
    }

    /// How the writer has batched so far: transactions, commands and the largest batch.
    public var writerStatistics: (transactions: Int, commands: Int, largestBatch: Int) {
        let s = writer.currentStatistics
        return (s.transactions, s.commands, s.largestBatch)
    }
}

/// What ``Store/statistics()`` reports.
public struct StoreStatistics: Sendable {
    public let logPosition: UInt64
    public let checkpointLag: UInt64
    public let activeSessions: Int
    public let mapSizeBytes: Int
    public let mapUsedBytes: Int
    public let readers: Int
}

/// What a committed command recorded.
public struct CommandOutcome: Sendable {
    /// The command's events with their positions; empty when it changed nothing (an exact retry).
    public let events: [EventEnvelope]
    /// The decision they came from (BatchDeleteImage's answered ids and refusals).
    public let decision: Decision
    /// Whether this answers a retry with what the first attempt recorded.
    public var isRetry = false

    init(events: [EventEnvelope], decision: Decision, isRetry: Bool = false) {
        self.events = events
        self.decision = decision
        self.isRetry = isRetry
    }

    /// What an earlier attempt of this very call recorded: the same `amz-sdk-invocation-id`, the
    /// same principal, and events this command records. A different call that reuses the id
    /// (a client bug, or a forged header) is not a retry and is decided normally.
    static func recorded(
        _ command: Command, _ metadata: RequestMetadata, _ txn: Transaction, _ schema: Schema
    ) throws -> CommandOutcome? {
        guard let invocationId = metadata.invocationId,
              let record = try LMDBTables(txn: txn, schema: schema).invocation(invocationId) else { return nil }
        var events: [EventEnvelope] = []
        try EventLog.scan(txn, schema, after: record.firstPosition - 1) { envelope in
            events.append(envelope)
            return UInt64(events.count) < record.count
        }
        guard events.allSatisfy({ command.records($0.event.type) && $0.metadata.principal == metadata.principal }) else { return nil }
        return CommandOutcome(events: events, decision: Decision(events.map(\.event)), isRetry: true)
    }
}

/// Read access to one snapshot. Valid only inside ``Store/read(_:)``.
public struct StoreReader {
    let txn: Transaction
    let schema: Schema

    /// The position of the last event, 0 for an empty log.
    public func lastPosition() throws -> UInt64 { try EventLog.tail(txn, schema)?.position ?? 0 }

    /// Up to `limit` events after `position`, in order.
    public func events(after position: UInt64 = 0, limit: Int = .max) throws -> [EventEnvelope] {
        var events: [EventEnvelope] = []
        guard limit > 0 else { return events }
        try EventLog.scan(txn, schema, after: position) { envelope in
            events.append(envelope)
            return events.count < limit
        }
        return events
    }

    /// The projection tables, for typed look-ups (`session`, `repository`, `layer`, `image`, `tag`).
    public var tables: some ProjectionTables { LMDBTables(txn: txn, schema: schema) }

    public func session(_ uploadId: String) throws -> UploadSession? { try tables.session(uploadId) }
    public func repository(_ ref: RepositoryRef) throws -> RepositorySummary? { try tables.repository(ref) }

    /// Up to `limit` entries of `table` whose keys start with `prefix`, after the key
    /// `prefix + after` when given, in key order; each with its key's part after the prefix.
    public func entries(
        _ table: ProjectionTable, prefix: [UInt8], after: String? = nil, limit: Int
    ) throws -> [(name: String, value: [UInt8])] {
        var entries: [(name: String, value: [UInt8])] = []
        guard limit > 0 else { return entries }
        let start = prefix + Array((after ?? "").utf8)
        try txn.scan(schema.database(table), from: start) { key, value in
            guard key.starts(with: prefix) else { return false }
            let name = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
            if let after, name == after { return true }
            entries.append((name, Array(value)))
            return entries.count < limit
        }
        return entries
    }

    /// How many entries `table` holds. - Complexity: O(1).
    public func count(_ table: ProjectionTable) throws -> Int { try txn.count(schema.database(table)) }

    /// The position the projections reflect.
    public func checkpoint() throws -> UInt64 { try ProjectionCheckpoint.read(txn, schema).position }
}

/// Brings the projection tables up to the log's tail at open: nothing to do when they are current
/// (the normal case, so open never replays), a catch-up when they lag (a store migrated from
/// before the projections existed), a full rebuild when their layout version changed.
enum ProjectionCatchUp {
    static let batchSize = 10_000

    static func run(_ environment: Environment, _ schema: Schema) throws {
        let current = try environment.read { txn in
            let checkpoint = try ProjectionCheckpoint.read(txn, schema)
            let tail = try EventLog.tail(txn, schema)?.position ?? 0
            return checkpoint.version == Projector.version && checkpoint.position == tail
        }
        guard !current else { return }
        while try environment.write({ txn in try step(txn, schema) }) {}
    }

    /// Applies up to ``batchSize`` events. - Returns: whether more remain.
    private static func step(_ txn: Transaction, _ schema: Schema) throws -> Bool {
        var checkpoint = try ProjectionCheckpoint.read(txn, schema)
        let tail = try EventLog.tail(txn, schema)?.position ?? 0
        if checkpoint.version != Projector.version {
            for table in ProjectionTable.allCases { try txn.clear(schema.database(table)) }
            checkpoint = ProjectionCheckpoint(position: 0, version: Projector.version)
        }
        guard checkpoint.position <= tail else {
            throw StoreError(.corrupt, "the projections are at position \(checkpoint.position) but the log ends at \(tail)")
        }
        guard checkpoint.position < tail else {
            try checkpoint.write(txn, schema)
            return false
        }
        var tables = LMDBTables(txn: txn, schema: schema)
        var applied = 0
        try EventLog.scan(txn, schema, after: checkpoint.position) { envelope in
            try Projector.apply(envelope, to: &tables)
            checkpoint.position = envelope.position
            applied += 1
            return applied < batchSize
        }
        try checkpoint.write(txn, schema)
        return checkpoint.position < tail
    }
}

extension Store {
    /// The migrations recorded in this store, in the order applied.
    public func appliedMigrations() throws -> [String] {
        try environment.read { try UploadMigrations.migrator.appliedIdentifiers($0) }
    }

    /// The migrations recorded in the store at `directory`, read without migrating; empty when
    /// there is no store there yet.
    public static func appliedMigrations(directory: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else { return [] }
        var config = Environment.Configuration()
        config.readOnly = true
        let environment = try Environment(directory: directory, configuration: config)
        return try environment.read { try UploadMigrations.migrator.appliedIdentifiers($0) }
    }
}
