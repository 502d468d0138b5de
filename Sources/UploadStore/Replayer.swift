import Crypto
import Foundation
public import LMDBKit
import LogHashing
import UploadCore
import UploadMigrations

/// Proves the projections: rebuilds them from the log into scratch memory twice, and compares
/// canonical SHA-256 digests of both rebuilds with each other and with the live tables.
///
/// Opens the store read-only (`MDB_RDONLY`): it never writes to the store it checks. Everything it
/// compares comes from one read snapshot, so a writer running at the same time cannot make it lie.
public enum Replayer {
    public struct Report: Sendable {
        /// Events in the log (each rebuild scans all of them).
        public var events: UInt64 = 0
        public var eventsScanned: UInt64 = 0
        public var seconds: Double = 0
        public var rebuildDigests: [String] = []
        public var liveDigest: String?
        public var checkpoint: UInt64?
        /// The Merkle root over every event, hex; an auditor records it to detect later rewrites.
        public var merkleRoot: String?
        /// What failed, if anything: the first problem found, naming a position or a key.
        public var failure: Failure?

        public var eventsPerSecond: Double { seconds > 0 ? Double(eventsScanned) / seconds : 0 }
        public var passed: Bool { failure == nil }
    }

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The store cannot be checked: missing, unmigrated, or from a newer binary.
        case unusable(String)
        /// A log entry is missing, out of place or does not decode.
        case log(String)
        /// Two states differ; names the table and the first differing key.
        case mismatch(String)

        public var description: String {
            switch self {
            case .unusable(let s): "cannot check the store: \(s)"
            case .log(let s): "log: \(s)"
            case .mismatch(let s): "projection mismatch: \(s)"
            }
        }

        /// The process exit status for this failure: 1 mismatch, 2 log damage, 3 unusable store.
        public var exitCode: Int32 {
            switch self {
            case .mismatch: 1
            case .log: 2
            case .unusable: 3
            }
        }
    }

    /// Progress reports: events processed so far and in all (each event is processed three
    /// times: two rebuilds and the Merkle tree).
    public typealias Progress = (_ done: UInt64, _ total: UInt64) -> Void

    public static func verify(directory: String, progress: Progress? = nil) -> Report {
        var report = Report()
        let environment: Environment
        do {
            environment = try Environment(directory: directory, configuration: .readOnly)
        } catch {
            report.failure = .unusable("\(error)")
            return report
        }
        let start = ContinuousClock.now
        do {
            try environment.read { txn in try verify(txn, into: &report, progress: progress) }
        } catch let failure as Failure {
            report.failure = failure
        } catch {
            report.failure = .unusable("\(error)")
        }
        let elapsed = ContinuousClock.now - start
        report.seconds = elapsed.seconds
        return report
    }

    /// One rebuild, timed: what `upload-bench` reports as the replay rate.
    public struct Rebuild: Sendable {
        public let events: UInt64
        public let seconds: Double
        /// The canonical digest of the rebuilt tables, hex.
        public let digest: String
    }

    /// Folds the whole log at `directory` into fresh projection tables once, from one read
    /// snapshot (the store is opened read-only).
    public static func rebuild(directory: String) throws -> Rebuild {
        let environment = try Environment(directory: directory, configuration: .readOnly)
        return try environment.read { txn in
            let schema = try Schema(txn)
            let start = ContinuousClock.now
            let (tables, count) = try rebuild(txn, schema, tick: {})
            let elapsed = ContinuousClock.now - start
            return Rebuild(
                events: count, seconds: elapsed.seconds,
                digest: Hex.encode(ProjectionDigest.of(tables)))
        }
    }

    private static func verify(_ txn: Transaction, into report: inout Report, progress: Progress?) throws {
        let status = try UploadMigrations.migrator.status(txn)
        guard status == .current else { throw Failure.unusable("migration status \(status); run `upload-coordinator migrate`") }
        let schema = try Schema(txn)
        let total = 3 * (try EventLog.tail(txn, schema)?.position ?? 0)
        var done: UInt64 = 0
        let tick: () -> Void = {
            done += 1
            if done % 65_536 == 0 || done == total { progress?(done, total) }
        }

        var rebuilds: [InMemoryProjectionTables] = []
        for _ in 0..<2 {
            let (tables, count) = try rebuild(txn, schema, tick: tick)
            rebuilds.append(tables)
            report.events = count
            report.eventsScanned += count
            report.rebuildDigests.append(Hex.encode(ProjectionDigest.of(tables)))
        }
        let live = try ProjectionDigest.liveEntries(txn, schema)
        report.liveDigest = Hex.encode(ProjectionDigest.of(live))

        try verifyMerkleTree(txn, schema, size: report.events, tick: tick)
        report.merkleRoot = Hex.encode(try MerkleLog.root(txn, schema, size: report.events))

        let checkpoint = try ProjectionCheckpoint.read(txn, schema)
        report.checkpoint = checkpoint.position
        if let difference = ProjectionDigest.firstDifference(ProjectionDigest.entries(rebuilds[0]), ProjectionDigest.entries(rebuilds[1])) {
            throw Failure.mismatch("two rebuilds differ (replay is not deterministic): \(difference)")
        }
        if let difference = ProjectionDigest.firstDifference(live, ProjectionDigest.entries(rebuilds[0]), leftName: "live", rightName: "rebuilt") {
            throw Failure.mismatch(difference)
        }
        guard checkpoint.position == report.events, checkpoint.version == Projector.version else {
            throw Failure.mismatch(
                "the checkpoint says position \(checkpoint.position) (layout \(checkpoint.version.map(String.init) ?? "none")) but the log ends at \(report.events) (layout \(Projector.version))")
        }
    }

    /// Recomputes every Merkle node from the raw event bytes and compares each with the stored
    /// one: a changed, removed, reordered or inserted byte changes a leaf, and the first
    /// differing node names the positions it covers.
    ///
    /// Leaves arrive in order, so each level's nodes complete in index order: the computed tree
    /// is one array per level, and one pass over the stored nodes (sorted by level, then index)
    /// compares them, lowest differing node first.
    private static func verifyMerkleTree(_ txn: Transaction, _ schema: Schema, size: UInt64, tick: () -> Void) throws {
        var levels: [[MerkleTree.Hash]] = []
        try txn.scan(schema.events) { key, value in
            guard let position = BigEndian.uint64(key) else { return false }
            let leaf = MerkleTree.leafHash(position: position, record: value)
            for n in MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf, node: { levels[Int($0)][Int($1)] }) {
                if levels.count <= Int(n.level) { levels.append([]) }
                levels[Int(n.level)].append(n.hash)
            }
            tick()
            return true
        }
        func place(_ level: Int, _ index: UInt64) -> String {
            let first = (index << UInt64(level)) + 1, last = (index + 1) << UInt64(level)
            return level == 0 ? "position \(first)" : "positions \(first)...\(last)"
        }
        var expected = (level: 0, index: 0)  // the next computed node the stored ones should hold
        func missingBefore(_ level: Int, _ index: UInt64) -> String? {
            while expected.level < levels.count {
                if expected.level > level || (expected.level == level && UInt64(expected.index) >= index) { return nil }
                if expected.index < levels[expected.level].count {
                    return "Merkle tree: the node over \(place(expected.level, UInt64(expected.index))) is missing from the stored tree"
                }
                expected = (expected.level + 1, 0)
            }
            return nil
        }
        var failure: String?
        try txn.scan(schema.merkleNodes) { key, value in
            guard key.count == 9 else {
                failure = "Merkle tree: a stored node has a \(key.count)-byte key where level and index take 9; no event supports it"
                return false
            }
            let level = Int(key[key.startIndex]), index = BigEndian.uint64(key.dropFirst()) ?? 0
            if let missing = missingBefore(level, index) {
                failure = missing
                return false
            }
            guard level < levels.count, index < UInt64(levels[level].count) else {
                failure = "Merkle tree: the node over \(place(level, index)) is stored but no event supports it"
                return false
            }
            guard levels[level][Int(index)].elementsEqual(value) else {
                failure = "Merkle tree: the node over \(place(level, index)) does not match the events"
                return false
            }
            expected = (level, Int(index) + 1)
            return true
        }
        if failure == nil { failure = missingBefore(Int.max, 0) }
        if let failure { throw Failure.log(failure) }
    }

    /// Folds the whole log into fresh in-memory tables, checking that positions are dense and
    /// every record decodes.
    private static func rebuild(_ txn: Transaction, _ schema: Schema, tick: () -> Void) throws -> (InMemoryProjectionTables, UInt64) {
        var tables = InMemoryProjectionTables()
        var expected: UInt64 = 1
        try txn.scan(schema.events) { key, value in
            guard let position = BigEndian.uint64(key) else {
                throw Failure.log("after position \(expected - 1): a key of \(key.count) bytes where an 8-byte position belongs")
            }
            guard position == expected else {
                throw Failure.log("position \(expected) is missing (the next event is at \(position))")
            }
            let envelope: EventEnvelope
            do {
                envelope = try EventEnvelope(position: position, decoding: Array(value))
            } catch {
                throw Failure.log("the event at position \(position) does not decode: \(error)")
            }
            do {
                try Projector.apply(envelope, to: &tables)
            } catch {
                throw Failure.log("the \(envelope.event.type.name) at position \(position) contradicts the events before it: \(error)")
            }
            expected += 1
            tick()
            return true
        }
        return (tables, expected - 1)
    }
}

/// The canonical digest of projection state: SHA-256 over every table in name order, and within
/// each table every entry in key byte order, each as
/// `table name · 0x00 · len(key) · key · len(value) · value` with 8-byte big-endian lengths.
/// Live LMDB tables and in-memory rebuilds are hashed through the same entries, so equal state
/// gives equal digests.
enum ProjectionDigest {
    typealias Entry = (table: ProjectionTable, key: [UInt8], value: [UInt8])

    static func entries(_ tables: InMemoryProjectionTables) -> [Entry] {
        ProjectionTable.allCases.sorted().flatMap { table in tables.entries(table).map { (table, $0.key, $0.value) } }
    }

    static func liveEntries(_ txn: Transaction, _ schema: Schema) throws -> [Entry] {
        var entries: [Entry] = []
        for table in ProjectionTable.allCases.sorted() {
            try txn.scan(schema.database(table)) { key, value in
                entries.append((table, Array(key), Array(value)))
                return true
            }
        }
        return entries
    }

    static func of(_ tables: InMemoryProjectionTables) -> SHA256.Digest { of(entries(tables)) }

    static func of(_ entries: [Entry]) -> SHA256.Digest {
        var hasher = SHA256()
        for entry in entries {
            hasher.update(data: Array(entry.table.rawValue.utf8) + [0])
            hasher.update(data: BigEndian.bytes(UInt64(entry.key.count)))
            hasher.update(data: entry.key)
            hasher.update(data: BigEndian.bytes(UInt64(entry.value.count)))
            hasher.update(data: entry.value)
        }
        return hasher.finalize()
    }

    /// Walks two sorted entry lists together and describes the first place they differ.
    static func firstDifference(
        _ left: [Entry], _ right: [Entry], leftName: String = "first", rightName: String = "second"
    ) -> String? {
        var l = 0, r = 0
        while l < left.count || r < right.count {
            let a = l < left.count ? left[l] : nil
            let b = r < right.count ? right[r] : nil
            if let a, let b, a.table == b.table, a.key == b.key {
                if a.value != b.value {
                    return "table \(a.table.rawValue), key '\(ProjectionKey.readable(a.key))': the \(leftName) value differs from the \(rightName) value"
                }
                l += 1
                r += 1
                continue
            }
            // The entry that sorts first is the one the other side lacks.
            let leftFirst: Bool
            if let a, let b {
                leftFirst = a.table != b.table ? a.table < b.table : ProjectionKey.precedes(a.key, b.key)
            } else {
                leftFirst = a != nil
            }
            let missing = leftFirst ? a! : b!
            return "table \(missing.table.rawValue), key '\(ProjectionKey.readable(missing.key))': only the \(leftFirst ? leftName : rightName) state has it"
        }
        return nil
    }
}
