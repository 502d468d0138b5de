import Crypto
import LMDBKit
import LogHashing
import UploadCore
import UploadMigrations

/// Proves the projections: rebuilds them from the log into scratch memory twice, compares the two
/// rebuilds with each other (record by record, hashing the second only if they differ), and the
/// canonical SHA-256 digest of the first with the live tables'.
///
/// Opens the store read-only (`MDB_RDONLY`): it never writes to the store it checks. Everything it
/// compares against (live tables, checkpoint, the log's size and the Merkle tree's extent) comes
/// from one read snapshot of each environment, the projections' taken first; the second rebuild,
/// and the checks the second core takes (the Merkle check, the whole decoding of a range of
/// records: ``SharedChecks``), read another snapshot of the log, bounded
/// by the first one's size (the log and the tree are append-only), so a writer running at the same
/// time cannot make it lie. Projections a step behind the log (a writer between its two
/// commits, or one that died there) are compared with a rebuild at their checkpoint.
public enum Replayer {
    public struct Report: Sendable {
        /// Events in the log (each rebuild scans all of them).
        public var events: UInt64 = 0
        public var eventsScanned: UInt64 = 0
        public var seconds: Double = 0
        /// The two rebuilds' digests, hex. When the two are equal record for record, the second
        /// is not hashed again: one state has one digest.
        public var rebuildDigests: [String] = []
        public var liveDigest: String?
        public var checkpoint: UInt64?
        /// The Merkle root over every event, hex; an auditor records it to detect later rewrites.
        public var merkleRoot: String?
        /// The checkpoints the log had signed; each holds against the tree.
        public var kept: KeptCheckpoints?
        /// What failed, if anything: the first problem found, naming a position or a key.
        public var failure: Failure?

        public var eventsPerSecond: Double { seconds > 0 ? Double(eventsScanned) / seconds : 0 }
        public var passed: Bool { failure == nil }
    }

    /// What verify found of the checkpoints the log signed, each of which held.
    public struct KeptCheckpoints: Sendable {
        public var count: Int
        /// The largest tree one signs: the events after it are held by no signature, only by
        /// the tree, which whoever edits them can compute again.
        public var signedUpTo: UInt64?
        /// Whether each one's signature was checked with the log's key, not only its root.
        public var signaturesChecked: Bool
    }

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The store cannot be checked: missing, unmigrated (but for migrations that only mark), or
        /// from a newer binary.
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

        /// What verify reports for an error a check threw: a store's own finding that it
        /// contradicts itself (``StoreError/Code/corrupt``: a malformed key, a record that does
        /// not decode) is damage to the log; anything else means the store could not be checked.
        init(_ error: any Error) {
            if let failure = error as? Failure {
                self = failure
            } else if let error = error as? StoreError, error.code == .corrupt {
                self = .log(error.message)
            } else {
                self = .unusable("\(error)")
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

    /// - Parameter bootId: this boot of the machine (``BootID``); a test gives another to stand for a reboot.
    /// - Parameter checkpointKey: the log's verifier key: when given, every kept checkpoint's
    ///   signature is checked too (its root against the tree is checked either way).
    public static func verify(
        directory: String, bootId: String = BootID.current, checkpointKey: NoteVerifier? = nil, progress: Progress? = nil
    ) -> Report {
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
            try verify(environment, directory: directory, bootId: bootId, checkpointKey: checkpointKey, into: &report, progress: progress)
        } catch {
            report.failure = Failure(error)
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
            let count = try EventLog.lastPosition(txn, schema)
            let tables = try rebuild(txn, schema, upTo: count, foldingApart: true, tick: {})
            let elapsed = ContinuousClock.now - start
            return Rebuild(
                events: count, seconds: elapsed.seconds,
                digest: Hex.encode(ProjectionDigest.of(tables)))
        }
    }

    private static func verify(
        _ environment: Environment, directory: String, bootId: String, checkpointKey: NoteVerifier?, into report: inout Report,
        progress: Progress?
    ) throws {
        // Database handles are opened once, in a transaction of their own that ends before any
        // other begins: LMDB lets only one transaction at a time open handles.
        let (schema, mayBeTorn) = try environment.read { txn in
            if let refusal = try UploadMigrations.migrator.status(txn).refusalToRead(toleratingPending: UploadMigrations.markingMigrations) { throw Failure.unusable(refusal.description) }
            let schema = try Schema(txn)
            return (schema, try UnsyncedProjectionWriters.state(txn, schema, bootId: bootId).mayBeTorn)
        }
        // Projections that cannot be read are not compared, but the log is checked all the same
        // (what an operator wants first after a crash); their reason is the failure only if the
        // log's checks pass. A torn file is not opened at all.
        let projections: ProjectionEnvironment?, uncompared: Failure?
        if mayBeTorn {
            (projections, uncompared) = (nil, .unusable("the log's checks passed, but the projections were not compared: the machine restarted while they had unsynced writes; open the store for writing (serve, migrate) to rebuild them, then verify again"))
        } else {
            switch Result(catching: { try ProjectionEnvironment.openForReading(dataDirectory: directory) }) {
            case .success(let opened?): (projections, uncompared) = (opened, nil)
            case .success(nil): (projections, uncompared) = (nil, .unusable("the log's checks passed, but the projections were not compared: they have never been built; open the store for writing (serve, migrate) first, then verify again"))
            case .failure(let error): (projections, uncompared) = (nil, .unusable("the log's checks passed, but the projections were not compared: they cannot be opened (\(error))"))
            }
        }
        var background: BackgroundWork<FlatProjectionState>?
        defer { background?.wait() }
        // Everything compared against (live tables, checkpoint, the tree's extent) is read from one
        // snapshot of each environment, in these transactions, which end before the second core's
        // work is waited for. Failures are reported in the order the checks mean: the first
        // rebuild's refusals, then the log's Merkle tree, then the live tables, then the records
        // that do not decode whole, then the second rebuild's refusals, then the comparisons (and
        // projections that could not be read, after every check of the log).
        var logSize: UInt64 = 0
        defer { report.events = logSize }
        let checks = { (ptxn: Transaction?) in
            try environment.read { txn in
                let (size, dense) = try Self.logSize(txn, schema)
                logSize = size
                // Each rebuild, the Merkle check and the whole decoding pass over every event once.
                let counter = ProgressCounter(total: 4 * size, progress)
                let merkle = MerkleVerification(size: size)
                // The checks that are not a rebuild's: whichever thread is free takes the next,
                // so that neither idles while the other works (which of the two is lighter depends
                // on the log and on the machine). Each runs in the snapshot of the thread that
                // takes it; the log and the tree are append-only, so their first `size` events and
                // the nodes over them are the same in both.
                let shared = SharedChecks(merkle: merkle, size: size, schema: schema, tick: { counter.tick() })
                // The second core rebuilds a second time, in a read snapshot of its own. The second
                // rebuild folds one event at a time where the first folds chunks of 1,024, so
                // comparing the two shows the fold does not depend on how it is batched.
                background = BackgroundWork {
                    try environment.read { txn in
                        let rebuilt = try rebuild(txn, schema, upTo: size, chunk: 1, tick: counter.tick)
                        // Only over a log a rebuild found whole and dense: then `size` is its true
                        // length, and the Merkle check sizes its buffer by it. (The first rebuild's
                        // failure is reported first anyway, and the main thread takes every check then.)
                        shared.help(txn)
                        return rebuilt
                    }
                }
                let nodesPast = Result { try merkle.checkNothingStoredPast(txn, schema) }
                let first = try rebuild(txn, schema, upTo: size, tick: counter.tick)
                guard dense else { throw Failure.log("the log holds \(size) events but its last position is another: positions are out of place") }
                let firstDigest = ProjectionDigest.of(first)
                let root = Result { try MerkleLog.root(txn, schema, size: size) }
                let liveCheck = ptxn.map { ptxn in
                    Result {
                        do {
                            return try compareLive(txn, ptxn, schema, projections!.schema, size: size, bootId: bootId, rebuilt: first, rebuiltDigest: firstDigest)
                        } catch let error as StoreError where error.code == .corrupt {
                            throw Failure.mismatch("the live projections: \(error.message)")  // not the log's damage
                        }
                    }
                }
                let keptCheckpoints = Result {
                    try checkKeptCheckpoints(SignedCheckpoint.all(txn, schema), size: size, key: checkpointKey) { try MerkleLog.root(txn, schema, size: $0) }
                }
                shared.help(txn)
                return (first, firstDigest, liveCheck, shared, nodesPast.flatMap { root }, keptCheckpoints, counter)
            }
        }
        let (first, firstDigest, liveCheck, shared, merkleRoot, keptCheckpoints, counter) = try projections.map { try $0.environment.read(checks) } ?? checks(nil)
        // A background that failed or could not begin its snapshot took no check: this thread
        // took them all. Once it has ended, every check has its outcome.
        let second = Result { try background!.result() }
        try shared.merkleOutcome.get()
        report.merkleRoot = Hex.encode(try merkleRoot.get())
        report.kept = try keptCheckpoints.get()
        let live = try liveCheck?.get()
        try shared.wholeDecodingOutcome.get()
        let secondState = try second.get()
        counter.finish()

        report.eventsScanned = 2 * logSize
        // Two states equal record for record have one digest: the second is hashed only when they differ.
        let secondDigest = first.holdsSameState(as: secondState) ? firstDigest : ProjectionDigest.of(secondState)
        report.rebuildDigests = [Hex.encode(firstDigest), Hex.encode(secondDigest)]
        report.liveDigest = live.map { Hex.encode($0.0) }
        report.checkpoint = live?.2.position
        if firstDigest != secondDigest {
            let difference = ProjectionDigest.firstDifference(ProjectionDigest.entries(first), ProjectionDigest.entries(secondState))
            throw Failure.mismatch(
                "the two rebuilds differ (the fold depends on how it is batched, so replay is not deterministic): \(difference ?? "in their digests")")
        }
        if let uncompared { throw uncompared }  // the log holds; only the projections went unchecked
        if let liveDifference = live?.1 { throw Failure.mismatch(liveDifference) }
    }

    /// The log's size: its count of events, which is its last position when positions are dense
    /// from 1. Verify's work is sized by the count, never by the last position, which damage can
    /// put anywhere (a record inserted at 2^62 made verify count past UInt64 and trap). When the two
    /// differ, one of positions 1...count is missing, and the rebuilds, which read up to the
    /// count, name the first; `dense` says so for the checks after them.
    static func logSize(_ txn: Transaction, _ schema: Schema) throws -> (size: UInt64, dense: Bool) {
        guard let (key, _) = try txn.last(schema.events) else { return (0, true) }
        guard let last = BigEndian.uint64(key) else { throw Failure.log("the event log has a key of \(key.count) bytes; positions are 8 bytes") }
        let count = UInt64(try txn.count(schema.events))
        return (count, last == count)
    }

    /// Every checkpoint the log signed must still hold: its tree no larger than the log, and its
    /// root the root of the tree (whose nodes the Merkle check proves from the events) at its size.
    /// A tree rebuilt from edited events, or a log cut short, fails here even when it is
    /// consistent in itself. With the log's key, each signature is checked too.
    static func checkKeptCheckpoints(
        _ kept: [SignedCheckpoint], size: UInt64, key: NoteVerifier?, root: (_ size: UInt64) throws -> MerkleTree.Hash
    ) throws -> KeptCheckpoints {
        for signed in kept {
            let checkpoint: Checkpoint
            do {
                checkpoint = try key.map { try Checkpoint(note: signed.note, verifiedBy: $0) } ?? signed.checkpoint()
            } catch {
                let whose = key.map { " with the log key given (\($0.text)): the key of another log, or a checkpoint that is not this log's" } ?? ""
                throw Failure.log("the checkpoint kept for tree size \(signed.size) does not verify\(whose): \(error)")
            }
            guard checkpoint.size == signed.size else {
                throw Failure.log("the checkpoint kept for tree size \(signed.size) names size \(checkpoint.size)")
            }
            guard checkpoint.size <= size else {
                throw Failure.log("the log signed a checkpoint of \(checkpoint.size) events but holds only \(size): events were removed")
            }
            guard try root(checkpoint.size) == checkpoint.rootHash else {
                throw Failure.log("the tree of the first \(checkpoint.size) events no longer has the root the log signed for it (\(Hex.encode(checkpoint.rootHash))): the history was rewritten")
            }
        }
        return KeptCheckpoints(count: kept.count, signedUpTo: kept.map(\.size).max(), signaturesChecked: key != nil)
    }

    /// The live tables against a rebuild of the log's first `size` events, in the snapshots `size`
    /// was read from.
    ///
    /// - Returns: the live digest, their first difference (named now, while the live tables can be
    ///   read; reported after the two rebuilds are compared) and the checkpoint.
    private static func compareLive(
        _ txn: Transaction, _ ptxn: Transaction, _ schema: Schema, _ projectionSchema: ProjectionSchema, size: UInt64, bootId: String,
        rebuilt: FlatProjectionState, rebuiltDigest: SHA256.Digest
    ) throws -> (SHA256.Digest, String?, ProjectionCheckpoint) {
        let liveDigest = try ProjectionDigest.ofLive(ptxn, projectionSchema)
        let checkpoint = try ProjectionCheckpoint.read(ptxn, projectionSchema)
        guard checkpoint.version != nil else {
            throw Failure.unusable("the projections are being built for the first time; check again once the store has opened")
        }
        // Another binary's layout (an upgrade or a roll-back under way) is not a difference found.
        guard checkpoint.version == Projector.version else { throw Failure.unusable(StoreError.projections(ofLayout: checkpoint.version).message) }
        guard checkpoint.position <= size else {
            throw Failure.mismatch("the checkpoint says position \(checkpoint.position) but the log ends at \(size)")
        }
        do { try checkpoint.checkFollows(txn, schema, tail: size) } catch let error as StoreError { throw Failure.mismatch(error.message) }
        // Behind the log only while a store is open (between its two commits) or was killed
        // there; a store that closed cleanly left them at the tail. Read in the snapshot the tail
        // comes from, so that the two agree.
        guard try checkpoint.position == size || UnsyncedProjectionWriters.state(txn, schema, bootId: bootId).writersOpen else {
            throw Failure.mismatch("the projections are at position \(checkpoint.position) but the log ends at \(size), and no store is open to fold the rest in")
        }
        let live = checkpoint.position == size ? rebuilt : try rebuild(txn, schema, upTo: checkpoint.position, tick: {})
        let liveRebuildDigest = checkpoint.position == size ? rebuiltDigest : ProjectionDigest.of(live)
        let difference = liveDigest == liveRebuildDigest ? nil : ProjectionDigest.firstDifference(
            try ProjectionDigest.liveEntries(ptxn, projectionSchema), ProjectionDigest.entries(live), leftName: "live", rightName: "rebuilt")
            ?? "the live tables' digest differs from the rebuild's"
        return (liveDigest, difference, checkpoint)
    }
}
