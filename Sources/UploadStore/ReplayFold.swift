import Foundation
import LMDBKit
import UploadCore

/// The rebuild that replay, LMDB's verify and the projections' full rebuild at open run: the log
/// folded into a fresh state, decoded on one thread and folded on another, or both in line.
extension Replayer {
    /// Folds the log's first `size` events into a fresh `State`, checking that positions are dense
    /// and every record decodes as far as `State` reads it (``ReplayState``).
    ///
    /// - Parameter foldingApart: decode on this thread and fold on another, handing over chunks of
    ///   `chunk` events, or fewer that hold ``chunkBytes`` of records (at most four waiting):
    ///   decoding is about half of a rebuild, so a lone
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
                    events.append(try State.decode(position: position, record: record, into: &events.bytes), recordBytes: record.count)
                    guard events.isFull(chunk) else { return }
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
                while var events = handOver.take() {
                    try state.fold(events)
                    events.removeAll()  // a recycled chunk waits empty: its events may hold manifests
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
                events.append(try State.decode(position: position, record: record, into: &events.bytes), recordBytes: record.count)
                guard events.isFull(chunk) else { return }
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

    /// The most record bytes a rebuild's chunk holds before it is handed over (``DecodedChunk/isFull(_:)``).
    static let chunkBytes = 16 << 20

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
    /// The bytes of the records decoded into it: what its events hold, about (a manifest's text).
    private(set) var recordBytes = 0

    mutating func append(_ event: Event, recordBytes: Int) {
        events.append(event)
        self.recordBytes += recordBytes
    }

    /// Whether the chunk is handed over: `count` events, or fewer that hold ``Replayer/chunkBytes``
    /// (a thousand manifests of 4 MiB would otherwise be a chunk of 4 GiB, several in flight).
    func isFull(_ count: Int) -> Bool { events.count >= count || recordBytes >= Replayer.chunkBytes }

    /// Room for `capacity` events of a typical size, so that filling a chunk does not grow it.
    init(capacity: Int) {
        events.reserveCapacity(capacity)
        bytes.reserveCapacity(capacity * 1024)
    }

    mutating func removeAll() {
        events.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
        recordBytes = 0
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
