import Crypto
import Foundation
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
        /// How many checkpoints the log had signed; each holds against the tree.
        public var signedCheckpoints: Int?
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
            let count = try EventLog.tail(txn, schema)?.position ?? 0
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
        let schema = try environment.read { txn in
            let status = try UploadMigrations.migrator.status(txn)
            guard status == .current else { throw Failure.unusable("migration status \(status); run `upload-coordinator migrate`") }
            let schema = try Schema(txn)
            // Before the projections are opened at all: a torn file is not to be read.
            guard try !UnsyncedProjectionWriters.state(txn, schema, bootId: bootId).mayBeTorn else {
                throw Failure.unusable("the machine restarted while the projections had unsynced writes; open the store for writing (serve, migrate) to rebuild them first")
            }
            return schema
        }
        guard let projections = try ProjectionEnvironment.openForReading(dataDirectory: directory) else {
            throw Failure.unusable("the store's projections have never been built; open it for writing (serve, migrate) first")
        }
        var background: BackgroundWork<FlatProjectionState>?
        defer { background?.wait() }
        // Everything compared against (live tables, checkpoint, the tree's extent) is read from one
        // snapshot of each environment, in these transactions, which end before the second core's
        // work is waited for. Failures are reported in the order the checks mean: the first
        // rebuild's refusals, then the log's Merkle tree, then the live tables, then the records
        // that do not decode whole, then the second rebuild's refusals, then the comparisons.
        let (first, firstDigest, liveCheck, shared, merkleRoot, keptCheckpoints, counter) = try projections.environment.read { ptxn in
            try environment.read { txn in
                let size = try EventLog.tail(txn, schema)?.position ?? 0
                report.events = size
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
                let firstDigest = ProjectionDigest.of(first)
                let root = Result { try MerkleLog.root(txn, schema, size: size) }
                let liveCheck = Result {
                    try compareLive(txn, ptxn, schema, projections.schema, size: size, bootId: bootId, rebuilt: first, rebuiltDigest: firstDigest)
                }
                let keptCheckpoints = Result {
                    try checkKeptCheckpoints(SignedCheckpoint.all(txn, schema), size: size, key: checkpointKey) { try MerkleLog.root(txn, schema, size: $0) }
                }
                shared.help(txn)
                return (first, firstDigest, liveCheck, shared, nodesPast.flatMap { root }, keptCheckpoints, counter)
            }
        }
        // A background that failed or could not begin its snapshot took no check: this thread
        // took them all. Once it has ended, every check has its outcome.
        let second = Result { try background!.result() }
        try shared.merkleOutcome.get()
        report.merkleRoot = Hex.encode(try merkleRoot.get())
        report.signedCheckpoints = try keptCheckpoints.get()
        let (liveDigest, liveDifference, checkpoint) = try liveCheck.get()
        try shared.wholeDecodingOutcome.get()
        let secondState = try second.get()
        counter.finish()

        report.eventsScanned = 2 * report.events
        // Two states equal record for record have one digest: the second is hashed only when they differ.
        let secondDigest = first.holdsSameState(as: secondState) ? firstDigest : ProjectionDigest.of(secondState)
        report.rebuildDigests = [Hex.encode(firstDigest), Hex.encode(secondDigest)]
        report.liveDigest = Hex.encode(liveDigest)
        report.checkpoint = checkpoint.position
        if firstDigest != secondDigest {
            let difference = ProjectionDigest.firstDifference(ProjectionDigest.entries(first), ProjectionDigest.entries(secondState))
            throw Failure.mismatch(
                "the two rebuilds differ (the fold depends on how it is batched, so replay is not deterministic): \(difference ?? "in their digests")")
        }
        if let liveDifference { throw Failure.mismatch(liveDifference) }
    }

    /// Every checkpoint the log signed must still hold: its tree no larger than the log, and its
    /// root the root of the tree (whose nodes the Merkle check proves from the events) at its size.
    /// A tree rebuilt from edited events, or a log cut short, fails here even when it is
    /// consistent in itself. With the log's key, each signature is checked too.
    /// - Returns: how many checkpoints were checked.
    static func checkKeptCheckpoints(
        _ kept: [SignedCheckpoint], size: UInt64, key: NoteVerifier?, root: (_ size: UInt64) throws -> MerkleTree.Hash
    ) throws -> Int {
        for signed in kept {
            let checkpoint: Checkpoint
            do {
                checkpoint = try key.map { try Checkpoint(note: signed.note, verifiedBy: $0) } ?? signed.checkpoint()
            } catch {
                throw Failure.log("the checkpoint kept for tree size \(signed.size): \(error)")
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
        return kept.count
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
        guard checkpoint.position <= size, checkpoint.version == Projector.version else {
            throw Failure.mismatch(
                "the checkpoint says position \(checkpoint.position) (layout \(checkpoint.version.map(String.init) ?? "none")) but the log ends at \(size) (layout \(Projector.version))")
        }
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

    /// Folds the log's first `size` events into a fresh `State`, checking that positions are dense
    /// and every record decodes as far as `State` reads it (``ReplayState``).
    ///
    /// - Parameter foldingApart: decode on this thread and fold on another, handing over chunks of
    ///   `chunk` events (at most four waiting): decoding is about half of a rebuild, so a lone
    ///   rebuild takes the time of the larger half on two cores. The fold is the same sequential
    ///   fold in log order either way, so the result is identical (tested); verify, which already
    ///   runs two rebuilds side by side, folds each on its own thread.
    static func rebuild<State: ReplayState>(
        _ txn: Transaction, _ schema: Schema, upTo size: UInt64, into: State.Type = FlatProjectionState.self,
        foldingApart: Bool = false, chunk: Int = 1024, tick: () -> Void
    ) throws -> State {
        var events = DecodedChunk<State.Event>(capacity: chunk)
        guard foldingApart else {
            var state = State()
            do {
                try decode(txn, schema, upTo: size, tick: tick) { position, record in
                    events.events.append(try State.decode(position: position, record: record, into: &events.bytes))
                    guard events.events.count == chunk else { return }
                    do { try state.fold(events) } catch { throw Refused(failure: error) }
                    events.removeAll()
                }
            } catch let refused as Refused {
                throw refused.failure
            } catch {
                // As folding apart: an event decoded before the failure that the fold refuses is
                // the first problem.
                try state.fold(events)
                throw error
            }
            try state.fold(events)
            return state
        }
        let handOver = ChunkQueue<DecodedChunk<State.Event>>()
        let folder = BackgroundWork { () throws -> State in
            var state = State()
            do {
                while let events = handOver.take() {
                    try state.fold(events)
                    handOver.recycle(events)
                }
            } catch {
                handOver.cancel()
                throw error
            }
            return state
        }
        defer {
            handOver.cancel()
            folder.wait()
        }
        do {
            try decode(txn, schema, upTo: size, tick: tick) { position, record in
                events.events.append(try State.decode(position: position, record: record, into: &events.bytes))
                guard events.events.count == chunk else { return }
                if !handOver.put(events) { throw Stopped() }
                events = handOver.reusable() ?? DecodedChunk(capacity: chunk)
                events.removeAll()
            }
        } catch {
            // The events decoded before the failure are folded first: an earlier event the fold
            // refuses is the first problem, as it would be folding in line.
            _ = handOver.put(events)
            handOver.finish()
            if case .failure(let foldFailure) = Result(catching: { try folder.result() }) { throw foldFailure }
            throw error
        }
        _ = handOver.put(events)
        handOver.finish()
        return try folder.result()
    }

    /// The folder stopped (it met an event it cannot fold): its error is the one to report.
    private struct Stopped: Error {}

    /// The fold refused an event of a chunk it was folding in line.
    private struct Refused: Error {
        let failure: any Error
    }

    /// Walks the log's first `size` records in order, checking that positions are dense, and hands
    /// each to `body` (a ``Stopped`` from it ends the walk quietly); a record `body` cannot decode
    /// is reported as log damage.
    private static func decode(
        _ txn: Transaction, _ schema: Schema, upTo size: UInt64, tick: () -> Void,
        _ body: (_ position: UInt64, _ record: UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var expected: UInt64 = 1
        do {
            try txn.scan(schema.events) { key, value in
                guard expected <= size else { return false }
                guard let position = BigEndian.uint64(key) else {
                    throw Failure.log("after position \(expected - 1): a key of \(key.count) bytes where an 8-byte position belongs")
                }
                guard position == expected else {
                    throw Failure.log("position \(expected) is missing (the next event is at \(position))")
                }
                do {
                    try body(position, value)
                } catch let error as CodecError {
                    throw Failure.log("the event at position \(position) does not decode: \(error)")
                }
                expected += 1
                tick()
                return true
            }
        } catch is Stopped {
            return
        }
        guard expected == size + 1 else { throw Failure.log("the log ends at position \(expected - 1), before \(size)") }
    }
}

/// The events of one chunk of a rebuild, and the bytes their names point into.
struct DecodedChunk<Event: Sendable>: Sendable {
    var events: [Event] = []
    var bytes: [UInt8] = []

    /// Room for `capacity` events of a typical size, so that filling a chunk does not grow it.
    init(capacity: Int) {
        events.reserveCapacity(capacity)
        bytes.reserveCapacity(capacity * 1024)
    }

    mutating func removeAll() {
        events.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
    }
}

/// A state a rebuild folds the log into, and how much of each record it decodes for it.
protocol ReplayState: ProjectionEntries {
    associatedtype Event: Sendable
    init()
    /// Decodes the record at `position`; what the event points into is appended to `bytes`.
    static func decode(position: UInt64, record: UnsafeRawBufferPointer, into bytes: inout [UInt8]) throws(CodecError) -> Event
    /// Folds the chunk's events in order; throws ``Replayer/Failure/log(_:)`` naming the first it cannot fold.
    mutating func fold(_ chunk: DecodedChunk<Event>) throws
}

extension Replayer.Failure {
    static func contradiction(_ type: EventType, at position: UInt64, _ error: any Error) -> Replayer.Failure {
        .log("the \(type.name) at position \(position) contradicts the events before it: \(error)")
    }
}

/// The fast rebuild: what the projections read, folded flat (replay, and both rebuilds of verify).
extension FlatProjectionState: ReplayState {
    static func decode(position: UInt64, record: UnsafeRawBufferPointer, into bytes: inout [UInt8]) throws(CodecError) -> FlatEvent {
        try FlatEvent(position: position, record: record, appendingTo: &bytes)
    }

    mutating func fold(_ chunk: DecodedChunk<FlatEvent>) throws {
        try chunk.bytes.withUnsafeBytes { bytes in
            for event in chunk.events {
                switch event {
                case .upload(let event):
                    do {
                        try apply(event, in: bytes)
                    } catch {
                        throw Replayer.Failure.contradiction(event.type, at: event.position, error)
                    }
                case .decoded(let event):
                    do {
                        try Projector.apply(event, to: &self)
                    } catch {
                        throw Replayer.Failure.contradiction(event.event.type, at: event.position, error)
                    }
                }
            }
        }
    }
}

/// The rebuild that writes live tables (a full rebuild of the projections at open), and the
/// tests' reference for the flat fold: each record decoded as far as projections read it (the one
/// real decoder, ``ProjectedEvent``) and folded by ``Projector`` into typed records.
extension InMemoryProjectionState: ReplayState {
    static func decode(position: UInt64, record: UnsafeRawBufferPointer, into bytes: inout [UInt8]) throws(CodecError) -> ProjectedEvent {
        try ProjectedEvent(position: position, decoding: Array(record)[...])
    }

    mutating func fold(_ chunk: DecodedChunk<ProjectedEvent>) throws {
        for event in chunk.events {
            do {
                try Projector.apply(event, to: &self)
            } catch {
                throw Replayer.Failure.contradiction(event.event.type, at: event.position, error)
            }
        }
    }
}

/// Chunks handed from one thread to another, at most `capacity` waiting: the decoder waits when
/// the folder falls behind, so memory stays bounded. Chunks the folder is done with come back to
/// be filled again, so their buffers are allocated (and their pages faulted in) only once.
private final class ChunkQueue<Chunk: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var chunks: [Chunk] = []
    private var done: [Chunk] = []
    private var finished = false
    private var cancelled = false
    private let capacity = 4

    /// - Returns: `false` once the queue was cancelled (the taker stopped).
    func put(_ chunk: Chunk) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while chunks.count >= capacity && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        chunks.append(chunk)
        condition.broadcast()
        return true
    }

    /// The next chunk; `nil` once everything put was taken and ``finish()`` was called, or on cancel.
    func take() -> Chunk? {
        condition.lock()
        defer { condition.unlock() }
        while chunks.isEmpty && !finished && !cancelled { condition.wait() }
        guard !cancelled, !chunks.isEmpty else { return nil }
        defer { condition.broadcast() }
        return chunks.removeFirst()
    }

    /// Hands back a chunk the taker has folded.
    func recycle(_ chunk: Chunk) {
        condition.lock()
        defer { condition.unlock() }
        if done.count < capacity { done.append(chunk) }
    }

    /// A chunk handed back, to fill again, if there is one.
    func reusable() -> Chunk? {
        condition.lock()
        defer { condition.unlock() }
        return done.popLast()
    }

    func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Counts events processed by any thread and reports every 65,536th, and the end. Reports are
/// made under the counter's lock, so the caller's callback never runs on two threads at once.
final class ProgressCounter: @unchecked Sendable {
    private let done = Locked<UInt64>(0)
    private let total: UInt64
    private let progress: Replayer.Progress?

    init(total: UInt64, _ progress: Replayer.Progress?) {
        self.total = total
        self.progress = progress
    }

    /// A counter for one thread's work, to call once per event: it takes the lock only every
    /// 4,096 events.
    var tick: () -> Void {
        guard progress != nil else { return {} }
        var local: UInt64 = 0
        return { [self] in
            local += 1
            guard local == 4096 else { return }
            local = 0
            add(4096)
        }
    }

    func finish() {
        done.withLock { done in
            done = total
            progress?(total, total)
        }
    }

    private func add(_ count: UInt64) {
        done.withLock { done in
            done += count
            if done % 65_536 == 0, done < total { progress?(done, total) }
        }
    }
}

/// Work started on a thread of its own at once; ``result()`` waits for it. Its starter must
/// wait for it on every path (it may hold the environment open): `defer { work.wait() }`.
private final class BackgroundWork<T: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private var outcome: Result<T, any Error>?
    private var waited = false

    private var work: (@Sendable () throws -> T)?

    init(_ work: @escaping @Sendable () throws -> T) {
        self.work = work
        // The thread holds only this object; the work (and what it captured, such as an open
        // environment) is released before the waiter wakes.
        let thread = Thread { [self] in
            outcome = Result(catching: self.work!)
            self.work = nil
            finished.signal()
        }
        thread.start()
    }

    /// Waits for the work to end (at once if it already has). Only the starting thread calls it.
    func wait() {
        guard !waited else { return }
        finished.wait()
        waited = true
    }

    /// Waits for the work; its value, or what it threw.
    func result() throws -> T {
        wait()
        return try outcome!.get()
    }
}
