import Crypto
import Foundation
import LMDBKit
import UploadMigrations
import Logging
public import UploadCore

/// An upload-coordinator store: the event log and its Merkle tree in one LMDB environment, committed
/// durably; the projections in a second one beside it (``ProjectionEnvironment``), committed right
/// behind the log without a sync; and one group-committing writer.
///
/// Open one `Store` per data directory per process and share it. Commands go through
/// ``append(_:)``; reads run against one consistent snapshot in ``read(_:)``.
/// Another process may open the same directory: LMDB serialises their write transactions, and
/// each transaction continues from the log's true tail, so positions are never reused.
public final class Store: EventStore {
    public let configuration: StoreConfiguration
    let environment: Environment
    let schema: Schema
    let projections: ProjectionEnvironment
    /// Whether opening found the projections possibly torn by a crash of the machine, and rebuilt them.
    public let rebuiltTornProjections: Bool
    public let migrationsAppliedAtOpen: [String]
    public let projectionLayoutReplacedAtOpen: UInt32?
    private let writer: GroupCommitWriter
    private let notifier = CommitNotifier()
    /// When a read refused for projections behind the log last asked the writer to fold them in.
    private let foldAsked = Locked<ContinuousClock.Instant?>(nil)
    /// The lag a read last found that this process's writer does not explain: the projections'
    /// checkpoint, since when, and when last. Reads that find the projections still there (the log
    /// may have grown past them meanwhile) wait out only what is left of
    /// ``projectionsLagPatience``, so that a lag that lasts holds the request threads once, not
    /// once a read; a sighting after a longer quiet is a lag of its own.
    private let lagSeen = Locked<(checkpoint: UInt64, since: ContinuousClock.Instant, last: ContinuousClock.Instant)?>(nil)
    /// The positions this process's writer has committed to the log and not yet to the
    /// projections (set by ``LMDBCommitter`` between its two commits).
    private let betweenCommits = Locked<ClosedRange<UInt64>?>(nil)
    /// The first ``close()``'s work, which every later call waits for: only it stops counting this
    /// store as an unsynced writer.
    private let closing = Once()
    /// Held while the store is open to write (``writersLock(in:exclusive:)``); released by ``close()``.
    private let writing: FileLock

    /// Opens (creating if needed) the store in `configuration.directory`, applies pending
    /// migrations, and brings the projections up to the log's tail.
    /// - Throws: ``StoreError`` with code `.migration` when the store was written by a newer binary,
    ///   or needs migrations and `migrateOnOpen` is off; a disk that filled as a migration or a
    ///   rebuild wrote is said so (``Disk/explaining(_:writingIn:)``), not only as an I/O error.
    public convenience init(_ configuration: StoreConfiguration) throws {
        do { try self.init(opening: configuration) } catch { throw Disk.explaining(error, writingIn: configuration.directory, opening: true) }
    }

    private init(opening configuration: StoreConfiguration) throws {
        self.configuration = configuration
        environment = try Environment(directory: configuration.directory, configuration: configuration.environment)
        let migrator = UploadMigrations.migrator
        // Read first: another program's LMDB store is refused with nothing added to its folder.
        let status = try environment.read { try migrator.status($0) }
        guard let writing = try Self.writersLock(in: configuration.directory, exclusive: false) else {
            throw StoreError(.io, "copy-store is moving the store in \(configuration.directory) to PostgreSQL now; serve it from there once the copy ends")
        }
        self.writing = writing
        // Under the lock: a copy that moved the store away left its note before releasing it.
        if let moved = StoreBackends.MovedToPostgreSQL.refusal(directory: configuration.directory) { throw moved }
        switch status {
        case .current: migrationsAppliedAtOpen = []
        case .superseded(let unknown): throw StoreError(.migration, MigrationError.superseded(unknown).description)
        case .pending(let pending):
            guard configuration.migrateOnOpen else {
                throw StoreError(.migration, MigrationError.pending(pending).description)
            }
            do { migrationsAppliedAtOpen = try migrator.migrate(environment) } catch let error as MigrationError {
                throw StoreError(.migration, error.description)
            }
        }
        let schema = try environment.read { try Schema($0) }
        self.schema = schema
        // Registered in the log's write transaction, so that the files of projections a crash may
        // have torn are gone before any other process of this boot can open them.
        let projectionsDirectory = ProjectionEnvironment.directory(of: configuration.directory)
        let environment = self.environment
        rebuiltTornProjections = try environment.writeGrowingTheMap { txn in
            let torn = try UnsyncedProjectionWriters.register(txn, schema, bootId: configuration.bootId)
            if torn, FileManager.default.fileExists(atPath: projectionsDirectory) {
                try FileManager.default.removeItem(atPath: projectionsDirectory)
            }
            return torn
        }
        if rebuiltTornProjections {
            configuration.logger.warning("the machine restarted while the projections had unsynced writes; rebuilding them from the log")
        }
        let projections: ProjectionEnvironment
        let tail: UInt64
        var unsynced = false  // whether this open may have written the projections without a sync
        do {
            // Opening writes nothing it does not commit last: a failure leaves nothing written.
            projections = try Self.openProjections(environment, schema, configuration)
            do {
                projectionLayoutReplacedAtOpen = try ProjectionCatchUp.run(environment, schema, projections, changingLayout: configuration.migrateOnOpen)
                tail = try environment.read { try EventLog.lastPosition($0, schema) }
            } catch {
                unsynced = (try? projections.environment.sync()) == nil
                throw error
            }
        } catch {
            // No writer will close this store, so it stops counting as one here, unless what it
            // wrote could not be synced: then the count stays, and the projections are rebuilt
            // after the next reboot, as for a writer killed.
            if !unsynced {
                try? environment.writeGrowingTheMap { txn in try UnsyncedProjectionWriters.unregister(txn, schema, bootId: configuration.bootId) }
            }
            throw error
        }
        self.projections = projections
        notifier.committed(upTo: tail)
        writer = GroupCommitWriter(
            committer: LMDBCommitter(
                environment: environment, schema: schema, projections: projections, configuration: configuration,
                betweenCommits: betweenCommits),
            configuration: configuration, notifier: notifier)
    }

    /// The projections' environment. One whose file is shorter than its last commit (left so by
    /// versions that did not extend the file after each commit, when that commit freed a large
    /// record; or cut short) holds nothing the log cannot give again: when no other process has it open
    /// to write, nor was killed with it open, it is removed here and rebuilt from the log, rather
    /// than the whole store refused. (Decided in the log's write transaction, which serialises
    /// every process's registration.)
    private static func openProjections(_ log: Environment, _ schema: Schema, _ configuration: StoreConfiguration) throws -> ProjectionEnvironment {
        func open() throws -> ProjectionEnvironment {
            try ProjectionEnvironment(dataDirectory: configuration.directory, like: configuration.environment, bootId: configuration.bootId)
        }
        do {
            return try open()
        } catch let error as EnvironmentError where error.isCutShort {
            let directory = ProjectionEnvironment.directory(of: configuration.directory)
            let removed = try log.writeGrowingTheMap { txn in
                guard try UnsyncedProjectionWriters.registeredAlone(txn, schema, bootId: configuration.bootId) else { return false }
                try FileManager.default.removeItem(atPath: directory)
                return true
            }
            guard removed else { throw error }
            configuration.logger.warning("the projections' file was shorter than its last commit uses (written so by an older version, or cut short); rebuilding them from the log", metadata: ["problem": "\(error)"])
            return try open()
        }
    }

    public var settings: DecisionSettings { configuration.settings }
    public var commitsMayLandLate: Bool { false }
    public var clock: any Clock { configuration.clock }

    /// A snapshot whose projections are behind its log has either caught a writer between its two
    /// commits (nothing answered is missed: that writer answers after its second), or shows what
    /// a failed commit left, in this process or another one on the folder (writes answered are
    /// missed). This process's own writer says when it is between them, and for which positions:
    /// a lag of those alone is answered at once. Any other lag only the stores' state can tell
    /// apart, so reads look again until it has lasted ``projectionsLagPatience`` (one read's
    /// wait, or what is left of it for the reads that find it later), and are then refused at
    /// once while it lasts; a refusal asks this process's writer, at most once a second, for a
    /// transaction, which folds them in first, as every one does. A read never waits for the
    /// writers' lock itself: another process may hold it for long, and a read waits on one of the
    /// few threads every request shares.
    public func readAnswering<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T {
        let started = ContinuousClock.now
        var pause = Duration.microseconds(200)
        while true {
            var behind = (checkpoint: UInt64(0), tail: UInt64(0))
            let read: Result<T, StoreError> = try snapshot { reader in
                behind = (try reader.checkpoint(), try reader.lastPosition())
                guard behind.checkpoint < behind.tail else { return .success(try body(reader)) }
                // Read after the snapshot opened: a writer still between its commits then was so
                // when the snapshot was taken.
                if let pending = betweenCommits.withLock({ $0 }), behind.checkpoint + 1 >= pending.lowerBound, behind.tail <= pending.upperBound {
                    return .success(try body(reader))
                }
                return .failure(Self.projectionsBehindRefusal(behind))
            }
            guard case .failure(let refusal) = read else { return try read.get() }
            let now = ContinuousClock.now
            let since = lagSeen.withLock { seen in
                if let lag = seen, lag.checkpoint == behind.checkpoint, now - lag.last < Self.projectionsLagPatience {
                    seen = (lag.checkpoint, lag.since, now)
                } else {
                    seen = (behind.checkpoint, now, now)
                }
                return seen!.since
            }
            guard now - since < Self.projectionsLagPatience, now - started < Self.projectionsLagPatience else {
                askForAFold()
                throw refusal
            }
            Thread.sleep(forTimeInterval: pause.seconds)
            pause = min(pause * 2, .milliseconds(5))  // a writer between commits is done within microseconds; a lag that lasts needs no spinning
        }
    }

    /// How long a lag that this process's writer does not explain may last before reads that
    /// find it are refused: far longer than another process's writer takes between its two
    /// commits (the log's last sync and an unsynced write: 36 ms for a transaction of 170,000
    /// events under strace), short enough to hold request threads for once.
    static let projectionsLagPatience = Duration.milliseconds(200)

    static func projectionsBehindRefusal(_ behind: (checkpoint: UInt64, tail: UInt64)) -> StoreError {
        StoreError(.viewsBehind, "The store's views are at position \(behind.checkpoint) of the log's \(behind.tail): a write is between its commits, or their commit failed after the log's (is the disk full?). Every write answered is in the log; reads resume once the views catch up.")
    }

    private func askForAFold() {
        let now = ContinuousClock.now
        let asks = foldAsked.withLock { last in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        if asks { writer.requestFold() }
    }

    /// Queues the commands for the writer, which decides, appends and projects them in its next
    /// transaction and answers each once that transaction is durable.
    public func append(_ submissions: [CommandSubmission]) async -> [Result<CommandOutcome, any Error>] {
        await writer.submit(submissions)
    }

    /// Runs `body` against one snapshot of the projections and one of the log, taken in that order:
    /// the projections reflect the log up to their checkpoint, and the log holds at least that.
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T {
        try snapshot(body)
    }

    func snapshot<T>(_ body: (StoreReader) throws -> T) throws -> T {
        try Self.snapshot(log: environment, schema, projections, body)
    }

    static func snapshot<T>(
        log environment: Environment, _ schema: Schema, _ projections: ProjectionEnvironment, _ body: (StoreReader) throws -> T
    ) throws -> T {
        try projections.environment.read { ptxn in
            try environment.read { txn in
                try body(try StoreReader(txn: txn, schema: schema, projections: ptxn, projectionSchema: projections.schema))
            }
        }
    }

    /// One process at a time per data directory is what a deployment runs; a second process
    /// sharing it sweeps too, which is safe (each expiry is decided at the log's tail).
    public func leads(_ duty: StoreDuty) -> Bool { true }

    /// Writes every queued command, then stops the writer, syncs the projections and stops
    /// counting as their unsynced writer. Later commands fail with `.closed`. The environments
    /// themselves close when the last reference to the store goes.
    public func close() async { await closing.run { await self.closeOnce() } }

    /// The projections are synced on the writer's thread as it stops (``LMDBCommitter/stop()``).
    private func closeOnce() async {
        await writer.shutdown()
        notifier.close()
        writing.release()
    }

    /// Every process with the store in `directory` open to write holds this lock shared (one byte
    /// of `.store-writers-lock` in the folder); `copy-store`, moving the store to PostgreSQL, holds
    /// it alone from before its snapshot until the folder carries its note that the store moved
    /// (``StoreBackends/MovedToPostgreSQL``): so it never leaves behind a write to the folder's
    /// store, and no process opens that store to write meanwhile.
    /// - Returns: `nil`, at once, when another holder's use excludes this one.
    public static func writersLock(in directory: String, exclusive: Bool) throws -> FileLock? {
        try FileLock.lockByte(0, of: directory + "/.store-writers-lock", exclusive: exclusive)
    }

    /// Waits until an event after `position` commits in this process, or `timeout` passes (so
    /// that a follower also sees what another process appended; it reads the log again then).
    /// - Returns: `false` when followers were stopped or the task was cancelled: stop following.
    public func waitForEvents(after position: UInt64, timeout: Duration) async -> Bool {
        await notifier.wait(after: position, timeout: timeout)
    }

    /// Whether ``stopFollowers()`` was called (or the store closed): live feeds end.
    public var followersStopped: Bool { notifier.isClosed }

    /// Stops every ``waitForEvents(after:)`` at once (graceful shutdown of live feeds).
    public func stopFollowers() { notifier.close() }

    /// Figures for monitoring, read from one snapshot.
    public func statistics() throws -> StoreStatistics {
        try Self.statistics(log: environment, schema, projections)
    }

    static func statistics(log environment: Environment, _ schema: Schema, _ projections: ProjectionEnvironment) throws -> StoreStatistics {
        try snapshot(log: environment, schema, projections) { reader in
            // Inside the snapshot: the reader slots held now include this read's own.
            let usage = reader.txn.environmentUsage(), projectionUsage = try reader.projections.environmentUsage()
            let position = try reader.lastPosition()
            return StoreStatistics(
                logPosition: position, checkpointLag: position - min(position, try reader.checkpoint()),
                activeSessions: try reader.count(.activeUploads),
                repositories: try reader.count(.repositories), images: try reader.count(.images),
                mapSizeBytes: usage.mapSize, mapUsedBytes: usage.usedBytes, readers: usage.readers, maxReaders: usage.maxReaders,
                projectionMapSizeBytes: projectionUsage.mapSize, projectionMapUsedBytes: projectionUsage.usedBytes)
        }
    }

    public func keep(_ checkpoint: SignedCheckpoint, signedAs identity: LogIdentity) throws -> SignedCheckpoint {
        try environment.writeGrowingTheMap { txn in try SignedCheckpoint.keep(checkpoint, signedAs: identity, txn, schema) }
    }

    /// Reader slots left by killed processes that opening this store released (`mdb_reader_check`).
    public var staleReadersCleared: Int { environment.staleReadersCleared + projections.environment.staleReadersCleared }

    /// Releases the reader slots of processes that died holding one, in the log's environment and
    /// the projections' (`mdb_reader_check`). - Returns: how many it released.
    public func clearStaleReaders() -> Int { environment.clearStaleReaders() + projections.environment.clearStaleReaders() }

    /// Holds a read transaction open until `release` returns; for testing what a process killed
    /// in the middle of a read leaves behind.
    public func holdingSnapshot<T>(_ release: () throws -> T) throws -> T {
        try snapshot { _ in try release() }
    }

    /// How the writer has batched so far: transactions, commands, the largest batch, and the time
    /// spent writing them (commits included).
    public var writerStatistics: (transactions: Int, commands: Int, largestBatch: Int, writing: Duration) {
        let s = writer.currentStatistics
        return (s.transactions, s.commands, s.largestBatch, s.writing)
    }
}

extension Store {
    /// The digest of the live projection tables, read in one snapshot.
    package func liveProjectionDigest() throws -> SHA256.Digest {
        try snapshot { try ProjectionDigest.ofLive($0.projections, $0.projectionSchema) }
    }

    /// The migrations recorded in this store, in the order applied.
    public func appliedMigrations() throws -> [String] {
        try environment.read { try UploadMigrations.migrator.appliedIdentifiers($0) }
    }

    /// The migrations recorded in the store at `directory`, read without migrating; empty when
    /// there is no store there yet.
    public static func appliedMigrations(directory: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else { return [] }
        let environment = try Environment(directory: directory, configuration: .readOnly)
        return try environment.read { try UploadMigrations.migrator.appliedIdentifiers($0) }
    }
}

/// What ``Store/statistics()`` reports.
public struct StoreStatistics: Sendable {
    public let logPosition: UInt64
    public let checkpointLag: UInt64
    public let activeSessions: Int
    public let repositories: Int
    /// Images of every repository (an image with several tags counts once).
    public let images: Int
    /// The log's environment (zero on PostgreSQL, which has no map).
    public let mapSizeBytes: Int
    public let mapUsedBytes: Int
    /// Reader slots of the log's environment held now by a transaction, of any process (the read
    /// that takes these figures among them).
    public let readers: Int
    /// Reader slots there are (zero on PostgreSQL).
    public let maxReaders: Int
    /// The projections' environment (each snapshot takes a reader slot in both).
    public let projectionMapSizeBytes: Int
    public let projectionMapUsedBytes: Int
}
