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
        #expect(clock.measure(database: Self.at(1_000_000), before: Self.at(2_000_000), after: Self.at(2_000_010)) == -1_000_005)
        #expect(clock.offset == -1_000_005)
        let now = clock.now().millisecondsSinceEpoch, system = SystemClock().now().millisecondsSinceEpoch
        #expect((system - 1_000_005 - 1000...system - 1_000_005 + 1000).contains(now))

        #expect(clock.measure(database: Self.at(0), before: Self.at(0), after: Self.at(DatabaseClock.longestMeasuringRoundTrip + 1)) == nil)
        #expect(clock.measure(database: Self.at(0), before: Self.at(10), after: Self.at(0)) == nil, "the clock stepped back")
        #expect(clock.offset == -1_000_005)
    }

    /// A database far away (every round trip past 50 ms) is still measured, by its shortest round
    /// trips; one that waited twice as long as the shortest is not.
    @Test func aFarDatabase_isMeasuredByItsShortestRoundTrips() {
        let clock = DatabaseClock()
        #expect(clock.measure(database: Self.at(5_080), before: Self.at(0), after: Self.at(80)) == 5_040)
        #expect(clock.measure(database: Self.at(6_090), before: Self.at(1_000), after: Self.at(1_150)) == 5_015)
        #expect(clock.measure(database: Self.at(0), before: Self.at(2_000), after: Self.at(2_161)) == nil)
        #expect(clock.offset == 5_015)
    }
}
