import Testing
@testable import UploadAPI

/// `/metrics` waits a bounded time for the store's figures: a read that does not answer (a
/// database that stopped answering) must not hold the scrape, which serves the counters without it.
struct ResultWithinTests {
    struct Failed: Error {}

    @Test func aTaskThatDoesNotFinishInTime_givesNil_andGoesOn() async throws {
        let slow = Task<Int, any Error> {
            try? await Task.sleep(for: .seconds(300))
            return 1
        }
        defer { slow.cancel() }
        let clock = ContinuousClock()
        let started = clock.now
        let outcome = await slow.result(within: .milliseconds(100))
        #expect(outcome == nil)
        // Generous: other suites running beside this one can hold the cooperative pool's threads.
        #expect(clock.now - started < .seconds(120), "answered after the wait, not after the task")
        #expect(!slow.isCancelled, "the task goes on, for the next caller to share")
    }

    @Test func aTaskThatFinishesInTime_givesItsResult() async throws {
        let quick = Task<Int, any Error> { 7 }
        let failing = Task<Int, any Error> { throw Failed() }
        #expect(try #require(await quick.result(within: .seconds(30))).get() == 7)
        guard case .failure(let error)? = await failing.result(within: .seconds(30)) else { Issue.record("no failure"); return }
        #expect(error is Failed)
    }

    /// A task that finishes long before the wait gives its result every time: the timer, woken by
    /// its cancellation, answered nil first now and then (a healthy store's figures scraped as
    /// unreadable, under parallel scrapes).
    @Test func aTaskThatFinishesInTime_neverLosesTheRaceToItsCancelledTimer() async throws {
        let timedOut = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var missed = 0
                    for index in 0..<2_000 where await Task<Int, any Error> { index }.result(within: .seconds(60)) == nil { missed += 1 }
                    return missed
                }
            }
            return await group.reduce(0, +)
        }
        #expect(timedOut == 0, "\(timedOut) of 16,000 quick results read as timed out")
    }
}
