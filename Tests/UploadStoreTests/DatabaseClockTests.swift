import Testing
import UploadCore
@testable import UploadStore

/// A PostgreSQL node's clock is its own plus the offset measured against the database's.
struct DatabaseClockTests {
    static func at(_ milliseconds: Int64) -> Timestamp { Timestamp(millisecondsSinceEpoch: milliseconds) }

    /// The database's reading is placed at the round trip's midpoint; a round trip that waited
    /// places it too loosely and measures nothing.
    @Test func aShortRoundTrip_setsTheOffset_aLongOneDoesNot() {
        let clock = DatabaseClock()
        #expect(clock.measure(database: Self.at(1_000_000), sent: Self.at(2_000_000), roundTrip: .milliseconds(10)) == -1_000_005)
        #expect(clock.offset == -1_000_005)
        // The database's reading run on by the monotonic clock, whatever this node's wall clock says.
        #expect((1_000_000...1_001_000).contains(clock.now().millisecondsSinceEpoch))

        #expect(clock.measure(database: Self.at(0), sent: Self.at(0), roundTrip: .milliseconds(DatabaseClock.longestMeasuringRoundTrip * 2 + 1)) == nil)
        #expect(clock.offset == -1_000_005)
    }

    /// Between measurements the database's time runs on by the monotonic clock, not by this
    /// node's wall clock plus the offset: a step of the wall clock on a node that writes nothing
    /// (and so measures nothing) refused every signature and every other node's token.
    @Test func betweenMeasurements_theDatabasesTimeRunsOnByTheMonotonicClock() async throws {
        let clock = DatabaseClock()
        #expect((SystemClock().now().millisecondsSinceEpoch - 1000...SystemClock().now().millisecondsSinceEpoch + 1000).contains(clock.now().millisecondsSinceEpoch),
                "the system clock before any measurement")
        let database: Int64 = 4_000_000_000_000  // far from this machine's clock
        clock.measure(database: Self.at(database), sent: SystemClock().now(), roundTrip: .milliseconds(2), sentAt: ContinuousClock.now - .milliseconds(2))
        try await Task.sleep(for: .milliseconds(200))
        let elapsed = clock.now().millisecondsSinceEpoch - database
        #expect((200...60_000).contains(elapsed), "\(elapsed) ms")  // far from this machine's clock: not its time
    }

    /// The database's own clock stepping an hour ahead (a host set wrong, a failover to one) is
    /// held off, as a node's own steps are: decisions and tokens read this clock.
    @Test func aStepOfTheDatabasesClock_isHeldOff() async throws {
        let clock = DatabaseClock()
        let database: Int64 = 4_000_000_000_000
        let first = ContinuousClock.now
        clock.measure(database: Self.at(database), sent: SystemClock().now(), roundTrip: .milliseconds(2), sentAt: first)
        try await Task.sleep(for: .milliseconds(100))
        let second = ContinuousClock.now, elapsed = (second - first).milliseconds
        clock.measure(database: Self.at(database + elapsed + 3_600_000), sent: SystemClock().now(), roundTrip: .milliseconds(2), sentAt: second)
        let after = clock.now().millisecondsSinceEpoch - database
        #expect((100...60_000).contains(after), "\(after) ms: not the hour ahead")
    }

    /// A database far away (every round trip past 50 ms) is still measured, by its shortest round
    /// trips; one that waited twice as long as the shortest is not. The shortest creeps up with
    /// each round trip turned away, so one freak sample stops no measurement for long.
    @Test func aFarDatabase_isMeasuredByItsShortestRoundTrips() {
        let clock = DatabaseClock()
        #expect(clock.measure(database: Self.at(5_080), sent: Self.at(0), roundTrip: .milliseconds(80)) == 5_040)
        #expect(clock.measure(database: Self.at(6_090), sent: Self.at(1_000), roundTrip: .milliseconds(150)) == 5_015)
        #expect(clock.measure(database: Self.at(0), sent: Self.at(2_000), roundTrip: .milliseconds(161)) == nil)
        #expect(clock.offset == 5_015)

        let freak = DatabaseClock()
        freak.measure(database: Self.at(0), sent: Self.at(0), roundTrip: .milliseconds(1))
        var turnedAway = 0
        while freak.measure(database: Self.at(7_080), sent: Self.at(7_000), roundTrip: .milliseconds(80)) == nil { turnedAway += 1 }
        #expect(turnedAway < 40 && freak.offset == 40)
    }
}
