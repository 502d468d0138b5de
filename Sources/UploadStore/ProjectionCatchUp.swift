import LMDBKit
import UploadCore

/// Brings the projections up to the log's tail: at open, and at the start of each write
/// transaction (another process, or a process that died between its two commits, may have left
/// the projections behind the log). Nothing to do when they are current (the normal case, so open
/// never replays); a catch-up when they lag; a full rebuild when they were never built or their
/// layout version changed. Projections that claim more than the log holds are refused
/// (``logWentBack(viewsAt:tail:wayOut:)``).
enum ProjectionCatchUp {
    /// The refusal of projections written from more events than the log holds. They commit after
    /// the log's synced commit, and a backup copies them first, so this means the log lost events it
    /// had: its file restored alone from an older copy, cut, or tampered with (or the folder was
    /// copied file by file while a server wrote, the log first). Rebuilt silently, the views would
    /// drop the only trace of it left on disk, and the next checkpoint, signed with the same key at
    /// a size already signed, would fork the log. `wayOut` says how to rebuild them from the log as
    /// it stands, once the operator has announced the fork. Checked whatever the views' layout.
    static func logWentBack(viewsAt position: UInt64, tail: UInt64, wayOut: String) -> StoreError {
        StoreError(.corrupt, "the projections were written from \(position) events, but the log holds \(tail): the log lost its last \(position - tail) events (restored alone from an older copy, cut, or tampered with), the projections are another store's, or the folder was copied file by file while a server wrote (copy a live store with `upload-coordinator backup`). Restore the whole store from one backup; or, to serve the log as it now stands, announce that it went back to position \(tail) (checkpoints signed past it fork from what it now signs), stop every process on the store, then \(wayOut)")
    }

    /// Refuses tables of layout `version`, not this binary's, unless they may be rebuilt to it
    /// (`changing`) and are older. A binary never rebuilds a newer one's tables down to its own
    /// layout: the newer processes or nodes would then refuse every batch until one of them
    /// rebuilt them up again, and so on in turn (a rolling upgrade, a rollback, a tool of another
    /// version). One that only signs or reads never rebuilds an older one's up, which would stop
    /// the older processes' writes.
    static func refuseLayout(_ version: UInt32, changing: Bool) throws {
        if version > Projector.version {
            throw StoreError(.migration, "the projections are of layout \(version), newer than this binary's \(Projector.version): run the newer binary (every process on one store, and every node, needs one version)")
        }
        guard changing else {
            throw StoreError(.migration, "the projections are of layout \(version), older than this binary's \(Projector.version): stop the older binary's processes and run `upload-coordinator migrate` with this one first")
        }
    }

    /// What a rebuild from tables of layout `version` (`nil`: never built) reports replacing:
    /// another binary's layout, or nothing.
    static func replacedLayout(_ version: UInt32?) -> UInt32? { version == Projector.version ? nil : version }

    static let batchSize = 10_000

    /// - Parameter changingLayout: whether tables of another layout may be rebuilt to this
    ///   binary's: at an open that may migrate, and by copy-store. Never below a newer binary's
    ///   layout.
    /// - Returns: the layout of the tables it rebuilt to this binary's, if it did.
    /// - Throws: ``StoreError`` `.migration` when the tables are of another layout and may not be
    ///   rebuilt.
    @discardableResult
    static func run(_ log: Environment, _ schema: Schema, _ projections: ProjectionEnvironment, changingLayout: Bool) throws -> UInt32? {
        let (checkpoint, tail) = try projections.environment.read { ptxn in
            let checkpoint = try ProjectionCheckpoint.read(ptxn, projections.schema)
            return (checkpoint, try log.read { txn in
                let tail = try EventLog.lastPosition(txn, schema)
                try checkpoint.checkFollows(txn, schema, tail: tail)
                return tail
            })
        }
        guard checkpoint.version != Projector.version || checkpoint.position != tail else { return nil }
        if checkpoint.position > tail {
            throw logWentBack(viewsAt: checkpoint.position, tail: tail, wayOut: "remove the data folder's `\(ProjectionEnvironment.subdirectory)` folder: the next open rebuilds it from the log")
        }
        if let version = checkpoint.version, version != Projector.version {
            try ProjectionCatchUp.refuseLayout(version, changing: changingLayout)
        }
        if checkpoint.version != Projector.version || checkpoint.position == 0 {
            try rebuild(log, schema, projections, from: checkpoint)
        }
        // Every write grows the map when it is full: a rebuild starts from a new file at the
        // configured size, which the projections may long have outgrown.
        while try projections.environment.writeGrowingTheMap({ ptxn in
            try log.read { txn in try step(txn, schema, ptxn, projections.schema) }
        }) {}
        return replacedLayout(checkpoint.version)
    }

    /// Replaces every table with a fold of the whole log: the fold replay runs, in memory, then
    /// each table written in key order with `MDB_APPEND`, in one transaction with the checkpoint.
    /// `migrate` on a million events takes 22 s this way, 31.5 s folding through the tables: this
    /// is the open after a crash of the machine, and after migration 0010. The whole state is held
    /// in memory meanwhile, as `upload-replay` holds it.
    /// - Parameter seen: the checkpoint that called for the rebuild; if another process has moved it
    ///   since (it rebuilt them, or caught them up), its work is kept and the catch-up goes on from it.
    private static func rebuild(
        _ log: Environment, _ schema: Schema, _ projections: ProjectionEnvironment, from seen: ProjectionCheckpoint
    ) throws {
        let (state, rebuilt): (InMemoryProjectionState, ProjectionCheckpoint)
        do {
            (state, rebuilt) = try log.read { txn in
                let tail = try EventLog.lastPosition(txn, schema)
                // Through Projector, as every live write is: the live tables are what verify's flat
                // rebuilds are checked against, so they are never written by the flat fold.
                return (
                    try Replayer.rebuild(txn, schema, upTo: tail, into: InMemoryProjectionState.self, foldingApart: true, tick: {}),
                    try ProjectionCheckpoint.at(tail, version: Projector.version, of: txn, schema)
                )
            }
        } catch let failure as Replayer.Failure {
            throw StoreError(.corrupt, "the projections cannot be rebuilt: \(failure)")
        }
        // Grown around the write alone: a full map must not fold the log again.
        try projections.environment.writeGrowingTheMap { ptxn in
            guard try ProjectionCheckpoint.read(ptxn, projections.schema) == seen else { return }
            for table in ProjectionTable.allCases {
                let database = projections.schema.database(table)
                try ptxn.clear(database)
                try state.forEachEntry(table) { try ptxn.put(database, $0, $1, options: .append) }
            }
            try rebuilt.write(ptxn, projections.schema)
        }
    }

    /// Applies up to ``batchSize`` events. - Returns: whether more remain.
    private static func step(_ txn: Transaction, _ schema: Schema, _ ptxn: Transaction, _ pschema: ProjectionSchema) throws -> Bool {
        let checkpoint = try ProjectionCheckpoint.read(ptxn, pschema)
        let tail = try EventLog.lastPosition(txn, schema)
        guard checkpoint.version == Projector.version, checkpoint.position <= tail else {
            throw StoreError(.corrupt, "the projections changed layout or position while being caught up; reopen the store")
        }
        var tables = LMDBTables(txn: ptxn, schema: pschema, caching: true)
        let position = try apply(txn, schema, after: checkpoint.position, to: &tables, limit: batchSize)
        try ProjectionCheckpoint.at(position, version: checkpoint.version, of: txn, schema).write(ptxn, pschema)
        return position < tail
    }

    /// Folds the log's events after `position`, up to `limit` of them, into `tables`.
    /// - Returns: the position of the last event folded (`position` when none).
    static func apply(
        _ txn: Transaction, _ schema: Schema, after position: UInt64, to tables: inout LMDBTables, limit: Int = .max
    ) throws -> UInt64 {
        var last = position
        var applied = 0
        guard limit > 0 else { return last }
        try EventLog.scan(txn, schema, after: position) { envelope in
            try Projector.apply(envelope, to: &tables)
            last = envelope.position
            applied += 1
            return applied < limit
        }
        return last
    }
}
