import LMDBKit
public import UploadCore

/// How far back a retry is answered with its original result: the SDK calls among the log's last
/// `events` events that were recorded within `duration` of the retry. Whichever bound is shorter
/// wins. A call outside the window is taken as new.
///
/// Both bounds are read off the log (positions and recorded times), never off the process, so every
/// writer sharing a store decides a retry the same way. The count bounds what the writer folds
/// into memory when it starts (one in-memory entry per call in the window, about 100 bytes);
/// the time bound is what SDKs need (they retry within seconds to minutes).
public struct RetryWindow: Sendable, Equatable {
    public var events: UInt64
    public var duration: Duration

    public init(events: UInt64, duration: Duration) {
        self.events = events
        self.duration = duration
    }

    public static let `default` = RetryWindow(events: 250_000, duration: .seconds(3600))
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
        var requestId: String
        var recordedAt: Timestamp
    }

    let limit: RetryWindow
    /// The log position the map reflects.
    private(set) var validAt: UInt64 = 0
    private var runs: [String: Run] = [:]
    /// Each run's start and id, oldest first, from `head` on: the eviction order.
    private var order: [(first: UInt64, id: String)] = []
    private var head = 0
    /// The newest run, which the next mark may extend.
    private var newest: String?

    init(limit: RetryWindow) { self.limit = limit }

    var count: Int { runs.count }

    /// The run of `invocationId`, if it lies in the window of a log whose tail is `tail` and whose
    /// next event is recorded at `now`.
    func run(for invocationId: String, tail: UInt64, now: Timestamp) -> Run? {
        guard let run = runs[invocationId], inWindow(run, tail: tail, now: now) else { return nil }
        return run
    }

    private func inWindow(_ run: Run, tail: UInt64, now: Timestamp) -> Bool {
        run.first &+ limit.events > tail && now.millisecondsSinceEpoch - run.recordedAt.millisecondsSinceEpoch <= limit.duration.nanoseconds / 1_000_000
    }

    /// Folds the marks appended after ``validAt`` (by any process) up to `tail`, the log's tail in
    /// the caller's transaction. Marks before the window's start are skipped.
    mutating func catchUp(_ txn: Transaction, _ schema: Schema, tail: UInt64) throws {
        guard tail != validAt else { return }
        if tail < validAt { self = InvocationWindow(limit: limit) }  // a store restored to an earlier state
        let windowStart = tail > limit.events ? tail - limit.events + 1 : 1
        let from = max(validAt + 1, windowStart)
        try txn.scan(schema.database(.invocationMarks), from: BigEndian.bytes(from)) { key, value in
            guard let position = BigEndian.uint64(key), position <= tail else { return false }
            note(try InvocationMark(decoding: Array(value)), at: position)
            return true
        }
        validAt = tail
    }

    /// Adds one mark; the caller guarantees positions only grow.
    mutating func note(_ mark: InvocationMark, at position: UInt64) {
        if let id = newest, id == mark.invocationId, var run = runs[id],
           run.first + run.count == position, run.requestId == mark.requestId {
            run.count += 1
            runs[id] = run
        } else {
            runs[mark.invocationId] = Run(first: position, count: 1, requestId: mark.requestId, recordedAt: mark.recordedAt)
            order.append((position, mark.invocationId))
            newest = mark.invocationId
        }
    }

    /// Takes the runs of `batch`, a window that noted only the marks of the transaction just
    /// committed (every one after this window's runs).
    mutating func absorb(_ batch: InvocationWindow) {
        for (first, id) in batch.order[batch.head...] {
            guard let run = batch.runs[id], run.first == first else { continue }
            runs[id] = run
            order.append((first, id))
            newest = id
        }
    }

    /// Marks the map valid at `tail` (after the writer noted its own commit's marks), and forgets
    /// the runs that have left the window.
    mutating func committed(upTo tail: UInt64, now: Timestamp) {
        validAt = tail
        while head < order.count {
            let (first, id) = order[head]
            if let run = runs[id], run.first == first {
                guard !inWindow(run, tail: tail, now: now) else { break }
                runs[id] = nil
                if newest == id { newest = nil }
            }
            head += 1
        }
        if head > 4096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
