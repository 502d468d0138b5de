import Testing
@testable import UploadStore

/// The wall clock's steps are held off until they last five minutes; its slews are followed.
struct WallClockStepsTests {
    /// Readings `(wall, monotonic)` in milliseconds, in order: the times given, and the changes.
    static func run(_ readings: [(Int64, Int64)]) -> (times: [Int64], changes: [WallClockSteps.Change?]) {
        var steps = WallClockSteps()
        let results = readings.map { steps.time(wall: $0.0, monotonic: $0.1) }
        return (results.map(\.milliseconds), results.map(\.change))
    }

    @Test func readingsThatAgreeWithTheMonotonicClock_areTakenAsTheyAre_slewsToo() {
        let (times, changes) = Self.run([(1_000_000, 0), (1_001_000, 1_000), (1_002_900, 2_000), (1_003_000, 3_000)])
        #expect(times == [1_000_000, 1_001_000, 1_002_900, 1_003_000], "900 ms off is within the tolerance")
        #expect(changes.allSatisfy { $0 == nil })
    }

    /// An hour ahead for six seconds, then put right: the hour is never taken, and time runs on.
    @Test func aStepPutRightWithinFiveMinutes_isNeverTaken() {
        let hour: Int64 = 3_600_000
        let (times, changes) = Self.run([(1_000_000, 0), (1_001_000 + hour, 1_000), (1_007_000 + hour, 7_000), (1_010_000, 10_000)])
        #expect(times == [1_000_000, 1_001_000, 1_007_000, 1_010_000])
        #expect(changes == [nil, .held(step: hour), nil, .ended])
    }

    /// Back an hour: held the same way (recorded times would otherwise stand still for the hour).
    @Test func aStepBack_isHeldOffToo() {
        let (times, changes) = Self.run([(5_000_000, 0), (1_400_000, 1_000), (1_402_000, 3_000)])
        #expect(times == [5_000_000, 5_001_000, 5_003_000])
        #expect(changes == [nil, .held(step: -3_601_000), nil])
    }

    /// A step that lasts is a clock put right (or set wrong for good): taken after five minutes.
    @Test func aStepThatLastsFiveMinutes_isTaken_andFollowedAfter() {
        let day: Int64 = 86_400_000, acceptance = WallClockSteps.acceptance
        let (times, changes) = Self.run([
            (1_000_000, 0), (1_001_000 + day, 1_000), (1_000_000 + day + acceptance, acceptance),
            (1_001_000 + day + acceptance, 1_000 + acceptance), (1_002_000 + day + acceptance, 2_000 + acceptance),
        ])
        #expect(times == [1_000_000, 1_001_000, 1_000_000 + acceptance, 1_001_000 + day + acceptance, 1_002_000 + day + acceptance])
        #expect(changes == [nil, .held(step: day), nil, .taken(step: day), nil])
    }
}
