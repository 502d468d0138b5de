import Crypto
import Foundation
import LMDBKit
public import LogHashing
import PostgresKit
import UploadCore
import UploadMigrations

extension Replayer {
    /// ``verify(directory:bootId:checkpointKey:progress:)`` for a store in PostgreSQL: in one
    /// `REPEATABLE READ READ ONLY` snapshot, the log folded twice (in chunks of 1,024, or fewer holding 16 MiB of records, and one event
    /// at a time, decoding each record whole), the two rebuilds and the live tables compared by
    /// digest, the Merkle tree computed again from the records and compared node by node, and every
    /// kept checkpoint checked against it. It never writes. The digests are the LMDB store's for
    /// the same log: equal state gives equal digests on both backends.
    public static func verify(databaseURL: String, checkpointKey: NoteVerifier? = nil, progress: Progress? = nil) -> Report {
        var report = Report()
        let start = ContinuousClock.now
        do {
            let connection = try PostgresConnection(url: databaseURL)
            if let refusal = try PostgresMigrations.status(connection).refusalToRead(toleratingPending: PostgresMigrations.markingMigrations) { throw Failure.unusable(refusal.description) }
            try connection.transaction("ISOLATION LEVEL REPEATABLE READ READ ONLY") {
                do { try PostgresLog.refuseUnfinishedCopy(connection) } catch { throw Failure.unusable("\(error)") }
                try verify(connection, checkpointKey: checkpointKey, into: &report, progress: progress)
            }
        } catch {
            report.failure = Failure(error)
        }
        report.seconds = (ContinuousClock.now - start).seconds
        return report
    }

    private static func verify(_ connection: PostgresConnection, checkpointKey: NoteVerifier?, into report: inout Report, progress: Progress?) throws {
        // The last position, not the last record: a record that does not decode is found in
        // order, as damage. Not trusted as a count either: a position past a gap is found below,
        // and nothing is sized by it.
        let size = try PostgresLog.lastPosition(connection) ?? 0
        report.events = size
        let counter = ProgressCounter(total: size > UInt64.max / 3 ? .max : 3 * size, progress)
        let tick = counter.tick
        var first = FlatProjectionState(), second = FlatProjectionState()
        var firstChunk = DecodedChunk<FlatProjectionState.Event>(capacity: 1024), secondChunk = DecodedChunk<FlatProjectionState.Event>(capacity: 1)
        var tree = MerkleRecomputation(connection: connection)
        var expected: UInt64 = 1
        while expected <= size {
            let page = PostgresLog.pageQuery(from: expected, through: size, rows: 10_000)
            let rows = try connection.query(page.sql, page.parameters)
            guard !rows.isEmpty else { break }
            for row in 0..<rows.count {
                let position = try rows.position(row, 0)
                guard position == expected else { throw Failure.log("position \(expected) is missing (the next event is at \(position))") }
                let record = rows.bytes(row, 1)
                do {
                    _ = try EventEnvelope(position: position, decoding: record)
                    try record.withUnsafeBytes { bytes in
                        firstChunk.append(try FlatProjectionState.decode(position: position, record: bytes, into: &firstChunk.bytes), recordBytes: bytes.count)
                        secondChunk.append(try FlatProjectionState.decode(position: position, record: bytes, into: &secondChunk.bytes), recordBytes: bytes.count)
                    }
                } catch let error as CodecError {
                    throw Failure.log("the event at position \(position) does not decode: \(error)")
                }
                try second.fold(secondChunk)
                secondChunk.removeAll()
                if firstChunk.isFull(1024) {
                    try first.fold(firstChunk)
                    firstChunk.removeAll()
                }
                try tree.add(leafAt: position, record: record)
                tick(); tick(); tick()
                expected += 1
            }
        }
        try first.fold(firstChunk)
        guard expected == size + 1 else { throw Failure.log("the log ends at position \(expected - 1), before \(size)") }
        try tree.finish(size: size)
        let snapshot = PostgresSnapshot(connection: connection)
        report.merkleRoot = Hex.encode(try snapshot.rootHash(size: size))
        report.kept = try checkKeptCheckpoints(PostgresLog.signedCheckpoints(connection), size: size, key: checkpointKey) {
            try snapshot.rootHash(size: $0)
        }
        counter.finish()
        report.eventsScanned = 2 * size
        let firstDigest = ProjectionDigest.of(first)
        let secondDigest = first.holdsSameState(as: second) ? firstDigest : ProjectionDigest.of(second)
        report.rebuildDigests = [Hex.encode(firstDigest), Hex.encode(secondDigest)]
        let liveDigest = try ProjectionDigest.ofLive(connection)
        report.liveDigest = Hex.encode(liveDigest)
        let state: PostgresProjectionState
        do { state = try PostgresProjectionState.read(connection) } catch let error as StoreError where error.code == .corrupt {
            throw Failure.mismatch("the live projections: \(error.message)")  // not the log's damage
        }
        report.checkpoint = state.position
        if firstDigest != secondDigest {
            let difference = ProjectionDigest.firstDifference(ProjectionDigest.entries(first), ProjectionDigest.entries(second))
            throw Failure.mismatch(
                "the two rebuilds differ (the fold depends on how it is batched, so replay is not deterministic): \(difference ?? "in their digests")")
        }
        // The tables commit with the log in one transaction: they are at its tail, or they were touched.
        guard state.version == Projector.version else { throw Failure.unusable(StoreError.projections(ofLayout: state.version).message) }
        guard state.position == size else {
            throw Failure.mismatch("the projections say position \(state.position) but the log ends at \(size)")
        }
        if liveDigest != firstDigest {
            var live: [ProjectionDigest.Entry] = []
            for table in ProjectionTable.allCases.sorted() {
                live += try PostgresTables.stored(connection, table, prefix: [], after: nil, limit: .max).map { (table, $0.key, $0.value) }
            }
            throw Failure.mismatch(ProjectionDigest.firstDifference(live, ProjectionDigest.entries(first), leftName: "live", rightName: "rebuilt")
                ?? "the live tables' digest differs from the rebuild's")
        }
    }
}

/// The Merkle tree computed again from the records, compared with the stored nodes in key order
/// (last leaf, then level), which is the order appends complete them.
private struct MerkleRecomputation {
    let connection: PostgresConnection
    /// The newest node completed at each level: the left sibling the next one at that level needs.
    private var frontier: [MerkleTree.Hash] = []
    private var stored: [(lastLeaf: UInt64, level: UInt8, hash: [UInt8])] = []
    private var next = 0

    init(connection: PostgresConnection) { self.connection = connection }

    mutating func add(leafAt position: UInt64, record: [UInt8]) throws {
        let leaf = MerkleTree.leafHash(position: position, record: record)
        let frontier = self.frontier
        let completed = MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf) { level, _ in frontier[Int(level)] }
        for node in completed {
            if Int(node.level) < self.frontier.count { self.frontier[Int(node.level)] = node.hash } else { self.frontier.append(node.hash) }
            let expected = (lastLeaf: position, level: node.level)
            guard let found = try nextStored() else {
                throw Replayer.Failure.log("the Merkle tree lacks node (level \(node.level), index \(node.index)), over positions up to \(position)")
            }
            guard found.lastLeaf == expected.lastLeaf, found.level == expected.level else {
                throw Replayer.Failure.log("the Merkle tree holds node (level \(found.level), last leaf \(found.lastLeaf)) where node (level \(node.level), last leaf \(position)) belongs")
            }
            guard found.hash == node.hash else {
                // Named by its events' positions too: what an operator looks up next.
                let first = node.index << UInt64(node.level) + 1
                throw Replayer.Failure.log("the Merkle tree's node (level \(node.level), index \(node.index)) is not the hash of the events under it, at positions \(first) through \(position)")
            }
        }
    }

    /// Nothing may be stored past the log's end.
    mutating func finish(size: UInt64) throws {
        if let extra = try nextStored() {
            throw Replayer.Failure.log("the Merkle tree holds node (level \(extra.level), last leaf \(extra.lastLeaf)) past position \(size), where the log ends")
        }
    }

    private mutating func nextStored() throws -> (lastLeaf: UInt64, level: UInt8, hash: [UInt8])? {
        if next == stored.count {
            let after = stored.last.map { ($0.lastLeaf, Int32($0.level)) } ?? (0, -1)
            let rows = try connection.query(
                "SELECT last_leaf, level, hash FROM merkle_nodes WHERE (last_leaf, level) > ($1, $2) ORDER BY last_leaf, level LIMIT 20000",
                [.position(after.0), .int32(after.1)])
            stored = try (0..<rows.count).map { (try rows.position($0, 0), UInt8(clamping: try rows.int64($0, 1)), rows.bytes($0, 2)) }
            next = 0
            guard !stored.isEmpty else { return nil }
        }
        defer { next += 1 }
        return stored[next]
    }
}
