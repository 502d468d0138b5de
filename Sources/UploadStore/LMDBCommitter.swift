import LMDBKit
import UploadCore
import Logging

/// The LMDB backend's batches (``BatchCommitter``): one write transaction of each environment,
/// the log's committed durably, then the projections' (unsynced). If the projections' commit fails
/// after the log's, the batch stands (it is durable): the committer folds it into the projections
/// from the log at once, or, if that fails too, the next transaction does first.
final class LMDBCommitter: BatchCommitter {
    private let environment: Environment
    private let schema: Schema
    private let projections: ProjectionEnvironment
    private let configuration: StoreConfiguration
    /// What answers retries; read and changed only on the writer's thread.
    nonisolated(unsafe) private var invocations: InvocationWindow
    /// Each batch's decoded records, emptied as the batch begins: one dictionary's storage for every
    /// batch, rather than one grown and freed per batch; replaced when a batch grew it past
    /// ``decodedRecordsKept`` (a catch-up of another process's many events, say). Used only on the
    /// writer's thread.
    nonisolated(unsafe) private var decodedRecords = DecodedRecords()
    static let decodedRecordsKept = 65_536
    /// The positions this writer has committed to the log and not yet to the projections: set
    /// between its two commits, for this process's reads (``Store/readAnswering(_:)``).
    private let betweenCommits: Locked<ClosedRange<UInt64>?>

    init(
        environment: Environment, schema: Schema, projections: ProjectionEnvironment, configuration: StoreConfiguration,
        betweenCommits: Locked<ClosedRange<UInt64>?>
    ) {
        self.environment = environment
        self.schema = schema
        self.projections = projections
        self.configuration = configuration
        self.betweenCommits = betweenCommits
        invocations = InvocationWindow(limit: configuration.retryWindow)
    }

    /// Fills the retry window from a read snapshot when the writer starts, so that the first write
    /// transaction (holding LMDB's write lock, which other processes wait for) only tops it up.
    /// Commands queue meanwhile. A failure here is left to the first transaction to meet again.
    func start() {
        do {
            try projections.environment.read { ptxn in
                try invocations.catchUp(ptxn, projections.schema, tail: try ProjectionCheckpoint.read(ptxn, projections.schema).position)
            }
        } catch {
            configuration.logger.error("the retry window could not be filled at start", metadata: ["error": "\(error)"])
        }
    }

    /// Leaves the projections at the log's tail (a failed commit of theirs may have left them
    /// behind), so that projections behind the log always mean a store still open, or killed;
    /// syncs them, and stops counting as their unsynced writer.
    func stop() {
        do {
            try ProjectionCatchUp.run(environment, schema, projections, changingLayout: false)
            try projections.environment.sync()
            try environment.writeGrowingTheMap { txn in try UnsyncedProjectionWriters.unregister(txn, schema, bootId: configuration.bootId) }
        } catch {
            configuration.logger.error("the projections could not be synced at close; they are rebuilt after the machine next restarts", metadata: ["error": "\(error)"])
        }
    }

    /// Writes the batch; when the map is full, grows it and writes the whole batch again (the
    /// failed transaction kept nothing), so callers never notice. Up to 20 doublings, as
    /// ``LMDBKit/Environment/writeGrowingTheMap(_:)``; past that the full map is an error like any
    /// other (the batch's, or one command's when the writer isolates it).
    func commit(
        _ batch: [GroupCommitWriter.Pending], isolating isolated: [Int: any Error]
    ) throws -> (results: GroupCommitWriter.Results, tail: UInt64) {
        do {
            return try commitGrowingTheMap(batch, isolating: isolated)
        } catch let failure as CommandFailure {
            throw CommandFailure(index: failure.index, error: explainingTheDisk(failure.error))
        } catch {
            throw explainingTheDisk(error)
        }
    }

    private func commitGrowingTheMap(
        _ batch: [GroupCommitWriter.Pending], isolating isolated: [Int: any Error]
    ) throws -> (results: GroupCommitWriter.Results, tail: UInt64) {
        for _ in 0..<20 {
            do {
                return try writeOnce(batch, isolated: isolated)
            } catch let failure as CommandFailure {
                guard let full = failure.error as? LMDBError, full.code == .mapFull else { throw failure }
                try growMap()
            } catch let error as LMDBError where error.code == .mapFull {
                try growMap()
            }
        }
        return try writeOnce(batch, isolated: isolated)
    }

    /// A batch's failure, with the data folder's free space when the disk filled (``Disk/explaining(_:writingIn:)``).
    private func explainingTheDisk(_ error: any Error) -> any Error { Disk.explaining(error, writingIn: environment.directory) }

    /// Grows both maps: the error does not say whose was full, and a map costs only address space.
    private func growMap() throws {
        try environment.growMap()
        try projections.environment.growMap()
        let (logMap, projectionsMap) = (try environment.usage().mapSize, try projections.environment.usage().mapSize)
        configuration.logger.notice("grew the LMDB maps", metadata: ["map.bytes": "\(logMap)", "projections.map.bytes": "\(projectionsMap)"])
    }

    /// One transaction of each environment for the batch, less the `isolated` commands, which get
    /// their failures. The projections' transaction begins first and commits last, in every process,
    /// so two writers never wait for each other's locks in opposite orders; while it is open, the
    /// projections are caught up to the log's tail and decided from.
    private func writeOnce(
        _ batch: [GroupCommitWriter.Pending], isolated: [Int: any Error]
    ) throws -> (results: GroupCommitWriter.Results, tail: UInt64) {
        var logCommitted: (results: GroupCommitWriter.Results, path: WritePath, tailBefore: UInt64)?
        // Cleared once the projections commit, or their fold after a failure ends either way.
        defer { betweenCommits.withLock { $0 = nil } }
        do {
            try projections.environment.write { ptxn in
                let committed = try environment.write { txn in try decideAndAppend(batch, isolated: isolated, txn, ptxn) }
                logCommitted = committed
                if committed.path.position > committed.tailBefore {
                    betweenCommits.withLock { $0 = (committed.tailBefore + 1)...committed.path.position }
                }
                try injectedProjectionFailure()
            }
        } catch {
            guard logCommitted != nil else { throw error }
            configuration.logger.error("the projections' commit failed after the log's; folding the batch in from the log", metadata: [
                "error": "\(error)"])
            catchUpProjections()
        }
        let (results, path, _) = logCommitted!
        invocations.absorb(path.marks)
        invocations.committed(upTo: path.position, now: path.now)
        return (results, path.position)
    }

    /// Brings the projections to the log's tail in a transaction of their own, after their commit
    /// failed behind the log's, so that a read after the answer still sees the write. If this fails
    /// too, the batch is still answered (the log holds it); reads that answer requests and find
    /// the projections behind are refused (``Store/readAnswering(_:)``), and ask for a transaction
    /// that folds them in first, until one does; `statistics()` shows the lag.
    private func catchUpProjections() {
        do {
            try injectedProjectionFailure()
            try ProjectionCatchUp.run(environment, schema, projections, changingLayout: false)
        } catch {
            configuration.logger.error("the projections could not be caught up; reads that answer requests are refused until a transaction folds them in", metadata: [
                "error": "\(error)"])
        }
    }

    private func injectedProjectionFailure() throws {
        if configuration.failProjectionCommit?() == true { throw StoreError(.io, "the projections' commit failed (injected by a test)") }
    }

    /// The batch's work inside both transactions: the projections caught up to the log's tail,
    /// each command decided from them and its events appended and projected, the checkpoint moved.
    private func decideAndAppend(
        _ batch: [GroupCommitWriter.Pending], isolated: [Int: any Error], _ txn: Transaction, _ ptxn: Transaction
    ) throws -> (results: GroupCommitWriter.Results, path: WritePath, tailBefore: UInt64) {
        if decodedRecords.records.capacity > Self.decodedRecordsKept { decodedRecords = DecodedRecords() }
        var write = LMDBWriteTransaction(txn: txn, schema: schema, tables: LMDBTables(txn: ptxn, schema: projections.schema, cache: decodedRecords))
        let tail = try EventLog.tail(txn, schema)
        let position = tail?.position ?? 0
        // Another process may have appended since this writer's last commit, or died between its
        // log's commit and its projections'.
        var checkpoint = try ProjectionCheckpoint.read(ptxn, projections.schema)
        guard checkpoint.version == Projector.version, checkpoint.position <= position else {
            throw StoreError(.corrupt, "the projections (layout \(checkpoint.version.map(String.init) ?? "none"), at position \(checkpoint.position)) do not follow this log (at \(position)); reopen the store to rebuild them")
        }
        if checkpoint.position < position {
            checkpoint.position = try ProjectionCatchUp.apply(txn, schema, after: checkpoint.position, to: &write.tables)
        }
        let now = invocations.decisionTime(wallClock: configuration.clock.now(), logTail: tail?.recordedAt)
        try invocations.catchUp(ptxn, projections.schema, tail: position)
        var path = WritePath(
            settings: configuration.settings, retryWindow: configuration.retryWindow, blobClaimLease: configuration.blobClaimLease, tail: position, now: now)
        let results = try path.write(batch, isolating: isolated, in: &write, invocations: invocations)
        try ProjectionCheckpoint.at(path.position, version: checkpoint.version, of: txn, schema).write(ptxn, projections.schema)
        return (results, path, position)
    }
}

/// A write transaction of the log's environment and one of the projections', for ``WritePath``.
struct LMDBWriteTransaction: WriteTransaction {
    let txn: Transaction
    let schema: Schema
    var tables: LMDBTables

    func append(_ envelope: EventEnvelope) throws { try EventLog.append(txn, schema, envelope) }

    func events(from first: UInt64, count: UInt64) throws -> [EventEnvelope] {
        var events: [EventEnvelope] = []
        try EventLog.scan(txn, schema, after: first - 1) { envelope in
            events.append(envelope)
            return UInt64(events.count) < count
        }
        return events
    }
}
