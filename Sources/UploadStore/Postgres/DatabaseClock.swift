import Logging
import Synchronization
public import UploadCore

/// This node's clock set to the database's: PostgreSQL's `clock_timestamp()` as last measured (as
/// the store opens, then by the writer's batches, in round trips short enough to place the
/// reading), run on by the monotonic clock since, so that no step of this node's wall clock moves
/// it, however long it lasts, on a node that writes nothing for long (before the first
/// measurement, the system clock). The database's own steps (a host set wrong, a failover to one)
/// are held off as a node's are (``WallClockSteps``). Decisions (``PostgresCommitter``), and what
/// one node stamps and another checks (registry tokens, the passwords GetAuthorizationToken hands
/// out, page cookies, signatures' windows), and what pages compare with recorded times, then read
/// one clock on every node.
final class DatabaseClock: Clock {
    private let logger: Logger
    private let steps = Mutex(WallClockSteps())

    init(logger: Logger = Logger(label: "upload-coordinator")) { self.logger = logger }

    private let offsetMilliseconds = Atomic<Int64>(0)
    /// The shortest round trip that measured the offset lately, in milliseconds: it creeps up a
    /// millisecond for each round trip it turns away, so that one freak sample (or a move to a
    /// database farther away) stops no measurement for long.
    private let shortestSpan = Atomic<Int64>(.max)

    /// The database's time at the last measurement, and when that was by the monotonic clock.
    private let measured = Mutex<(database: Int64, at: ContinuousClock.Instant)?>(nil)

    func now() -> Timestamp {
        guard let (database, at) = measured.withLock({ $0 }) else { return SystemClock().now() }
        return Timestamp(millisecondsSinceEpoch: database &+ (ContinuousClock.now - at).milliseconds)
    }

    /// The database's time less this node's, when it was measured.
    var offset: Int64 { offsetMilliseconds.load(ordering: .relaxed) }

    /// Takes the offset from `database`, read in a round trip sent at this node's wall-clock time
    /// `sent` that took `roundTrip` (timed by the monotonic clock, which no clock step moves), when
    /// that round trip was short enough to place the reading: the offset is then known within
    /// half of it. Short enough is ``longestMeasuringRoundTrip``, or twice the shortest lately (a
    /// database far away); a round trip that waited (for the append lock) is longer, and measures
    /// nothing.
    /// - Returns: the offset, when measured.
    @discardableResult
    func measure(database: Timestamp, sent: Timestamp, roundTrip: Duration, sentAt: ContinuousClock.Instant? = nil) -> Int64? {
        let span = roundTrip.components.seconds &* 1000 &+ roundTrip.components.attoseconds / 1_000_000_000_000_000
        let shortest = min(shortestSpan.load(ordering: .relaxed), span)
        guard span >= 0, span <= max(Self.longestMeasuringRoundTrip, shortest.multipliedReportingOverflow(by: 2).partialValue) else {
            shortestSpan.store(shortest &+ 1, ordering: .relaxed)
            return nil
        }
        shortestSpan.store(shortest, ordering: .relaxed)
        let offset = database.millisecondsSinceEpoch &- (sent.millisecondsSinceEpoch &+ span / 2)
        offsetMilliseconds.store(offset, ordering: .relaxed)
        // Read at the round trip's midpoint (half of it after it was sent).
        let readAt = (sentAt ?? ContinuousClock.now - roundTrip) + roundTrip / 2
        let (time, change) = steps.withLock { $0.time(wall: database.millisecondsSinceEpoch, monotonic: SteadyWallClock.milliseconds(at: readAt)) }
        if let change { SteadyWallClock.report(change, of: "the database's clock", to: logger) }
        measured.withLock { $0 = (time, readAt) }
        return offset
    }

    /// A round trip this short always measures the offset, in milliseconds.
    static let longestMeasuringRoundTrip: Int64 = 50

    /// The database's time in milliseconds, as SQL (each batch reads it in `tailAndProjectionsQuery`).
    static let expression = "floor(extract(epoch FROM clock_timestamp()) * 1000)::int8"
}
