import Foundation
import LMDBKit
import LogHashing
import PostgresKit
import UploadCore

/// Copies one store into another, empty one, whichever backends they are (`copy-store`): every
/// event record byte for byte at its position, and the checkpoints the log signed. The destination
/// extends its own Merkle tree over each record, as an append does, and builds its projections
/// from the log, so the copy's root is the source's root (checked before it returns) and its
/// projections equal a replay.
public enum StoreCopy {
    public struct Report: Sendable, Equatable {
        public let events: UInt64
        public let signedCheckpoints: Int
        /// The Merkle root, hex, of both stores.
        public let merkleRoot: String
    }

    /// Events per read snapshot of the source and per transaction of the destination, and the
    /// most bytes of records one holds (after its first): large manifests make fewer a batch.
    static let batch = 5_000
    static let batchBytes = 64 << 20

    /// A copy is whole only once this returns. Until then a PostgreSQL destination is marked as an
    /// unfinished copy, which no store opens (a crash part way must not leave a log that looks
    /// whole but stops short, then grows from there); an LMDB one is built beside its place by
    /// the command, and renamed into it once finished.
    /// - Throws: ``StoreError`` `.io` when the destination already holds events, or when the
    ///   copy's root differs from the source's (the destination keeps what it wrote: remove it).
    public static func copy(from source: any SnapshotReading, to destination: any EventStore, progress: ((UInt64, UInt64) -> Void)? = nil) throws -> Report {
        guard let importer = destination as? any RecordImporting else { throw StoreError(.io, "this store cannot take a copy") }
        try importer.beginImport()
        // Everything up to the source's tail as of now: a snapshot's worth, read in batches (the
        // log is append-only, so later batches hold the same records for these positions).
        let (size, checkpoints) = try source.read { (try $0.lastPosition(), try $0.signedCheckpoints()) }
        var position: UInt64 = 0
        while position < size {
            let records = try source.read { try $0.eventRecords(from: position + 1, count: Int(min(UInt64(batch), size - position)), byteBudget: batchBytes) }
            guard !records.isEmpty else { throw StoreError(.corrupt, "the source's log ends at position \(position), before \(size)") }
            for (offset, record) in records.enumerated() {
                do { _ = try EventEnvelope(position: position + UInt64(offset) + 1, decoding: record) } catch {
                    throw StoreError(.corrupt, "the source's event at position \(position + UInt64(offset) + 1) does not decode: \(error)")
                }
            }
            try importer.importRecords(records, after: position)
            position += UInt64(records.count)
            progress?(position, size)
        }
        try importer.importCheckpoints(checkpoints)
        try importer.buildProjections()
        let sourceRoot = try source.read { try $0.rootHash(size: size) }
        let copiedRoot = try destination.read { try $0.rootHash(size: size) }
        guard sourceRoot == copiedRoot, try destination.read({ try $0.lastPosition() }) == size else {
            throw StoreError(.corrupt, "the copy's Merkle root differs from the source's; remove the copy and look at the source with upload-replay")
        }
        try importer.finishImport()
        return Report(events: size, signedCheckpoints: checkpoints.count, merkleRoot: Hex.encode(sourceRoot))
    }
}

extension StoreCopy {
    /// The refusal of a destination that holds `what` (events, or a checkpoint of them).
    public static func holdsALogRefusal(_ what: String) -> StoreError {
        StoreError(.io, "the destination already holds \(what); copy into a new, empty store")
    }

    /// Whether `error` refused this copy because another one into the same database is under way
    /// (or died): that mark is the other's, and the database its to keep or drop.
    public static func refusedForAnotherCopy(_ error: any Error) -> Bool {
        (error as? StoreError)?.message == PostgresLog.unfinishedCopyRefusal.message
    }
}

/// What a store offers ``StoreCopy`` as a destination: records appended as they are, not decided.
protocol RecordImporting: EventStore {
    /// Checks that the store holds no events and no signed checkpoints and, where that is how a
    /// copy is kept from being opened or written (PostgreSQL: a node may have opened the empty
    /// database before), marks it as an unfinished copy, in one step under the append lock.
    /// - Throws: ``StoreError`` `.io` when it holds either.
    func beginImport() throws
    /// Appends `records` at the positions after `tail`, extending the Merkle tree, in one durable
    /// transaction. - Throws: when the log's tail is not `tail`.
    func importRecords(_ records: [[UInt8]], after tail: UInt64) throws
    /// Keeps checkpoints another store of this log signed.
    func importCheckpoints(_ checkpoints: [SignedCheckpoint]) throws
    /// Brings the projections to the log's tail.
    func buildProjections() throws
    /// Takes away the unfinished copy's mark: the copy is whole, and opens.
    func finishImport() throws
}

extension Store: RecordImporting {
    /// Built beside its place by the command, which no other process opens.
    func beginImport() throws {
        guard try read({ try $0.lastPosition() == 0 && $0.latestSignedCheckpoint() == nil }) else { throw StoreCopy.holdsALogRefusal("events or signed checkpoints") }
    }

    func importRecords(_ records: [[UInt8]], after tail: UInt64) throws {
        try environment.writeGrowingTheMap { txn in
            guard (try EventLog.lastPosition(txn, schema)) == tail else { throw StoreError(.io, "the log moved while being copied into") }
            for (offset, record) in records.enumerated() {
                let position = tail + UInt64(offset) + 1
                try txn.put(schema.events, BigEndian.bytes(position), record, options: .append)
                try MerkleLog.append(txn, schema, position: position, record: record)
            }
        }
    }

    func importCheckpoints(_ checkpoints: [SignedCheckpoint]) throws {
        try environment.writeGrowingTheMap { txn in
            for checkpoint in checkpoints { try txn.put(schema.signedCheckpoints, BigEndian.bytes(checkpoint.size), Array(checkpoint.note.utf8)) }
        }
    }

    func buildProjections() throws { try ProjectionCatchUp.run(environment, schema, projections, changingLayout: true) }

    /// Nothing: an LMDB copy is built beside its place and renamed into it once whole.
    func finishImport() throws {}
}

extension PostgresStore: RecordImporting {
    func beginImport() throws {
        try withConnection { connection in
            try PostgresLog.underAppendLock(connection) {
                try PostgresLog.refuseUnfinishedCopy(connection)  // another copy into it, under way or dead
                if let held = try PostgresLog.heldLog(connection) { throw StoreCopy.holdsALogRefusal(held) }
                try PostgresLog.markUnfinishedCopy(connection)
            }
        }
    }

    func importRecords(_ records: [[UInt8]], after tail: UInt64) throws {
        try withConnection { connection in
            try PostgresLog.underAppendLock(connection) {
                guard (try PostgresLog.lastPosition(connection) ?? 0) == tail else { throw StoreError(.io, "the log moved while being copied into") }
                var write = PostgresWriteTransaction(connection: connection, tail: tail)
                for (offset, record) in records.enumerated() { try write.append(record: record, at: tail + UInt64(offset) + 1) }
                try write.flush(projectionsAt: nil)
            }
        }
    }

    func importCheckpoints(_ checkpoints: [SignedCheckpoint]) throws {
        try withConnection { connection in
            try PostgresLog.checkpointRows(checkpoints).run(on: connection)
        }
    }

    func buildProjections() throws {
        try withConnection { try PostgresProjectionRebuild.runIfNeeded($0, changingLayout: true, logger: configuration.logger) }
    }

    func finishImport() throws {
        try withConnection { try PostgresLog.clearUnfinishedCopy($0) }
    }
}
