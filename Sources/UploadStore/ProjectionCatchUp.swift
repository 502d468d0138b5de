import LMDBKit
import UploadCore

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
        var tables = LMDBTables(txn: txn, schema: schema, caching: true)
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
