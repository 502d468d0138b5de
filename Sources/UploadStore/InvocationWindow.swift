import LMDBKit
import UploadCore

/// How far back a retry is answered with its original result: the SDK calls among the log's last
/// `events` events that were recorded within `duration` of the retry. Whichever bound is shorter
/// wins. A call outside the window is taken as new.
///
/// Both bounds are measured on the log: positions, and the recorded time of the call against the
/// time the retry's transaction records. So every writer sharing a store, and every restart, decides
/// a retry the same way (up to the clocks of the processes, near the time bound's edge). The time
/// bound is what SDKs need: they retry within seconds to minutes (botocore's read timeout is 60 s).
/// The count bounds what a writer holds and folds into memory when it starts: one entry per call in
/// the window, about 170 bytes (the invocation id and its hash, the run, its place in the eviction
/// order), so at most about 170 MB, and only under a sustained load of more than 280 calls a
/// second. Under load the count is the shorter bound: at 20,000 calls a second a million events
/// last 50 seconds.
public struct RetryWindow: Sendable, Equatable {
    public var events: UInt64
    public var duration: Duration

    public init(events: UInt64, duration: Duration) {
        self.events = events
        self.duration = duration
    }

    public static let `default` = RetryWindow(events: 1_000_000, duration: .seconds(3600))
}

/// The writer's map from invocation id to the events that call recorded, over the
/// ``RetryWindow``: what answers a retry, from memory instead of a B-tree of random keys.
///
/// It is a cache valid at one log position (``validAt``). Inside each write transaction the writer
/// first brings it to the log's tail, folding the invocation marks that any process appended
/// since, so a retry sent to another process on the same store is found too. The fold reads only
/// the marks in the window, so its first fill after open is bounded by ``RetryWindow/events``.
struct InvocationWindow {
    /// One call's events: positions `first ..< first + count`, all from one request.
    struct Run: Equatable {
        var first: UInt64
        var count: UInt64
        var recordedAt: Timestamp
    }

    let limit: RetryWindow
    /// The log position the map reflects.
    private(set) var validAt: UInt64 = 0
    /// Keyed by the invocation id's bytes, as the marks' table was before it (``ExactString``).
    private var runs: [ExactString: Run] = [:]
    /// Each run's start and id, oldest first, from `head` on: the eviction order.
    private var order: [(first: UInt64, id: ExactString)] = []
    private var head = 0
    /// The newest run's invocation and request ids: the next mark may extend that run (the request
    /// id is needed for no other).
    private var newest: (invocationId: ExactString, requestId: String)?
    /// The latest transaction time the window has evicted by. A writer never decides at an
    /// earlier time, so a run it has forgotten is never one it should still answer.
    private var timeFloor = Timestamp(millisecondsSinceEpoch: 0)

    init(limit: RetryWindow) { self.limit = limit }

    /// The time a transaction decides at: the wall clock's `now`, but never before the log's last
    /// recorded time (recorded times never go backwards, even if the clock does), nor before a
    /// time this window has evicted by (a batch that records no event still evicts: deciding
    /// earlier would find a run forgotten that the window's rule says is still in it).
    func decisionTime(wallClock now: Timestamp, logTail: Timestamp?) -> Timestamp {
        max(now, logTail ?? timeFloor, timeFloor)
    }

    /// The run of `invocationId`, if it lies in the window of a log whose tail is `tail` and whose
    /// next event is recorded at `now`.
    func run(for invocationId: String, tail: UInt64, now: Timestamp) -> Run? {
        guard let run = runs[ExactString(invocationId)], inWindow(run, tail: tail, now: now) else { return nil }
        return run
    }

    private func inWindow(_ run: Run, tail: UInt64, now: Timestamp) -> Bool {
        // `tail >= run.first` always; the subtraction cannot wrap, whatever the limits.
        guard tail - run.first < limit.events else { return false }
        let age = now.millisecondsSinceEpoch.subtractingReportingOverflow(run.recordedAt.millisecondsSinceEpoch)
        return !age.overflow && age.partialValue <= limit.duration.milliseconds
    }

    /// Folds the marks appended after ``validAt`` (by any process) up to `tail`, the projections'
    /// checkpoint in the caller's transaction of the projection environment. Marks before the
    /// window's start are left out; the mark just before it is read too, so that a call cut by the
    /// start is seen to begin outside the window rather than mistaken for a shorter call inside it.
    /// (``validAt`` is always a transaction's end, so no call spans it.) When a mark cannot be read
    /// the window is emptied (valid at position 0, so the next catch-up fills it afresh), never
    /// left half caught up.
    mutating func catchUp(_ txn: Transaction, _ schema: ProjectionSchema, tail: UInt64) throws {
        try catchUp(tail: tail) { from, visit in
            try txn.scan(schema.database(.invocationMarks), from: BigEndian.bytes(from)) { key, value in
                guard let position = BigEndian.uint64(key) else {
                    throw StoreError(.corrupt, "invocation-marks has a key of \(key.count) bytes; positions are 8 bytes")
                }
                return try visit(position, Array(value))
            }
        }
    }

    /// The same, over any backend's marks: `scan(from, visit)` visits each mark's position and
    /// record from position `from` on, in order, until `visit` returns false.
    mutating func catchUp(
        tail: UInt64, marks scan: (_ from: UInt64, _ visit: (UInt64, [UInt8]) throws -> Bool) throws -> Void
    ) throws {
        guard tail != validAt else { return }
        if tail < validAt { forgetAll() }  // a store restored to an earlier state
        let windowStart = tail - min(tail, limit.events) + 1
        let from = validAt + 1 >= windowStart ? validAt + 1 : windowStart - 1
        do {
            try scan(from) { position, record in
                guard position <= tail else { return false }
                do {
                    note(try InvocationMark(decoding: record), at: position)
                } catch {
                    throw StoreError(.corrupt, "the invocation mark at position \(position) does not decode: \(error)")
                }
                return true
            }
        } catch {
            forgetAll()
            throw error
        }
        validAt = tail
    }

    /// Empties the window, keeping only its time floor: the next catch-up fills it afresh.
    mutating func forgetAll() {
        let floor = timeFloor
        self = InvocationWindow(limit: limit)
        timeFloor = floor
    }

    /// Adds one mark; the caller guarantees positions only grow.
    mutating func note(_ mark: InvocationMark, at position: UInt64) {
        let id = ExactString(mark.invocationId)
        if let newest, newest.invocationId == id, newest.requestId.sameBytes(as: mark.requestId), var run = runs[id],
           run.first + run.count == position {
            run.count += 1
            runs[id] = run
        } else {
            runs[id] = Run(first: position, count: 1, recordedAt: mark.recordedAt)
            order.append((position, id))
            newest = (id, mark.requestId)
        }
    }

    /// Takes the runs of `batch`, a window that noted only the marks of the transaction just
    /// committed (every one after this window's runs).
    mutating func absorb(_ batch: InvocationWindow) {
        for (first, id) in batch.order[batch.head...] {
            guard let run = batch.runs[id], run.first == first else { continue }
            runs[id] = run
            order.append((first, id))
        }
        if batch.newest != nil { newest = batch.newest }
    }

    /// Marks the map valid at `tail` (after the writer noted its own commit's marks), and forgets
    /// the runs that have left the window.
    mutating func committed(upTo tail: UInt64, now: Timestamp) {
        validAt = tail
        timeFloor = max(timeFloor, now)
        let now = timeFloor
        while head < order.count {
            let (first, id) = order[head]
            if let run = runs[id], run.first == first {
                guard !inWindow(run, tail: tail, now: now) else { break }
                runs[id] = nil
                if newest?.invocationId == id { newest = nil }
            }
            head += 1
        }
        if head > 4096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
