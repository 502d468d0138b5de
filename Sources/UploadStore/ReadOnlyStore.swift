import Foundation
import LMDBKit
import UploadCore
import UploadMigrations

extension StoreError {
    /// A reader's refusal of projections whose layout (`nil`: none yet) is not this binary's.
    static func projections(ofLayout version: UInt32?) -> StoreError {
        if let version, version > Projector.version {
            return StoreError(.migration, "the projections are of layout \(version), newer than this binary's \(Projector.version): read the store with the binary that serves it")
        }
        return StoreError(.migration, "the projections are of layout \(version.map(String.init) ?? "none"), not this binary's \(Projector.version): open the store for writing with this binary (migrate, serve) to rebuild them, or read it with the binary that serves it")
    }
}

/// What a reader does with a store whose projections cannot be read as this binary lays them out:
/// never built, maybe torn by a machine's crash, or of another layout (a store another binary serves).
public enum UnreadableProjections: Sendable {
    /// Refuse to open: the reader needs them (`stats`).
    case refuse
    /// Read them as empty at position 0, so that every event counts as not yet projected: what a
    /// reader of the log alone wants (`events`, the audit commands, which read the log past the
    /// projections' checkpoint, and `copy-store`'s source), and `backup`, whose copy rebuilds them.
    case readAsEmpty
}

/// A data folder's store opened read-only: what operators' and auditors' tools use on a folder
/// that `serve` may be writing. Opening one never migrates the store, never counts as a writer of
/// its projections, and never waits for the write lock.
public struct ReadOnlyStore: Sendable {
    let environment: Environment
    let schema: Schema
    let projections: ProjectionEnvironment

    /// - Throws: ``StoreError`` when there is no store at `directory`, or it needs migrating (but
    ///   for migrations that only mark, ``UploadMigrations/markingMigrations``), or
    ///   (unless `unreadable` is `.readAsEmpty`) its projections cannot be read (open it for writing first).
    public init(directory: String, unreadableProjections unreadable: UnreadableProjections = .refuse) throws {
        switch Environment.noStore(in: directory) {
        case nil: break
        case .missingStore?: throw StoreError(.io, "\(directory) holds no store")
        case let reason?: throw StoreError(.io, reason.description)
        }
        let environment = try Environment(directory: directory, configuration: .readOnly)
        let (schema, torn) = try environment.read { txn in
            if let refusal = try UploadMigrations.migrator.status(txn).refusalToRead(toleratingPending: UploadMigrations.markingMigrations) { throw StoreError(.migration, refusal.description) }
            let schema = try Schema(txn)
            return (schema, try UnsyncedProjectionWriters.state(txn, schema, bootId: BootID.current).mayBeTorn)
        }
        do {
            guard !torn else {
                throw StoreError(.corrupt, "the machine restarted while the projections had unsynced writes: open the store for writing (serve, migrate) to rebuild them first")
            }
            guard let projections = try ProjectionEnvironment.openForReading(dataDirectory: directory) else {
                throw StoreError(.migration, "the store's projections have never been built: open it for writing (serve, migrate) first")
            }
            let version = try projections.environment.read { try ProjectionCheckpoint.read($0, projections.schema).version }
            guard version == Projector.version else { throw StoreError.projections(ofLayout: version) }
            self.projections = projections
        } catch {
            guard unreadable == .readAsEmpty else { throw error }
            projections = try ProjectionEnvironment.empty()
        }
        self.environment = environment
        self.schema = schema
    }

    /// Runs `body` against one snapshot of the projections and one of the log, in that order.
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T {
        try Store.snapshot(log: environment, schema, projections) { try body($0) }
    }

    public func statistics() throws -> StoreStatistics {
        try Store.statistics(log: environment, schema, projections)
    }

    /// Copies the two environments into `directory` (which must exist and hold neither),
    /// compacted, while writers go on: the projections first, then the log, each from one read
    /// snapshot of its own. The projections commit right behind the log, so their checkpoint can
    /// never be past the copied log's tail, and the copy opens as a store whose projections catch
    /// up from the log, as after any restart.
    ///
    /// The copy counts no unsynced projection writer: its projections came whole from one
    /// committed snapshot, so opening it after a reboot need not rebuild them.
    /// - Returns: the tail of the copied log.
    public func copy(to directory: String) throws -> UInt64 {
        let projectionsCopy = ProjectionEnvironment.directory(of: directory)
        try FileManager.default.createDirectory(atPath: projectionsCopy, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try projections.environment.copy(to: projectionsCopy, compacting: true)
        try environment.copy(to: directory, compacting: true)
        let copy = try Environment(directory: directory, configuration: .init())
        // The copy holds no free page: a store larger than the default map needs it grown.
        return try copy.writeGrowingTheMap { txn in
            let schema = try Schema(txn)
            try UnsyncedProjectionWriters.forgetAll(txn, schema)
            return try EventLog.lastPosition(txn, schema)
        }
    }
}
