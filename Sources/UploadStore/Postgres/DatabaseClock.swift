import Synchronization
public import UploadCore

/// This node's wall clock set to the database's: the system clock plus the offset last measured
/// against PostgreSQL's `clock_timestamp()` (as the store opens, then by the writer's batches).
/// What one node stamps and another checks (registry tokens, the passwords GetAuthorizationToken
/// hands out, page cookies), and what pages compare with recorded times, then read one clock on
/// every node. Decisions read the database's clock itself, under the append lock
/// (``PostgresCommitter``).
final class DatabaseClock: Clock {
    private let offsetMilliseconds = Atomic<Int64>(0)
    /// The shortest round trip that measured the offset so far.
    private let shortestSpan = Atomic<Int64>(.max)

    func now() -> Timestamp {
        Timestamp(millisecondsSinceEpoch: SystemClock().now().millisecondsSinceEpoch &+ offsetMilliseconds.load(ordering: .relaxed))
    }

    /// The database's time less this node's, when it was measured.
    var offset: Int64 { offsetMilliseconds.load(ordering: .relaxed) }

    /// Takes the offset from `database`, read between this node's system-clock readings `before`
    /// and `after`, when that round trip was short enough to place the reading: the offset is then
    /// known within half of it. Short enough is ``longestMeasuringRoundTrip``, or twice the
    /// shortest so far (a database far away); a round trip that waited (for the append lock) is
    /// longer, and measures nothing.
    /// - Returns: the offset, when measured.
    @discardableResult
    func measure(database: Timestamp, before: Timestamp, after: Timestamp) -> Int64? {
        let span = after.millisecondsSinceEpoch &- before.millisecondsSinceEpoch
        let shortest = min(shortestSpan.load(ordering: .relaxed), span)
        guard span >= 0, span <= max(Self.longestMeasuringRoundTrip, shortest.multipliedReportingOverflow(by: 2).partialValue) else { return nil }
        shortestSpan.store(shortest, ordering: .relaxed)
        let offset = database.millisecondsSinceEpoch &- (before.millisecondsSinceEpoch &+ span / 2)
        offsetMilliseconds.store(offset, ordering: .relaxed)
        return offset
    }

    /// A round trip this short always measures the offset, in milliseconds.
    static let longestMeasuringRoundTrip: Int64 = 50

    /// The database's time in milliseconds, as SQL (each batch reads it in `tailAndProjectionsQuery`).
    static let expression = "floor(extract(epoch FROM clock_timestamp()) * 1000)::int8"
}
