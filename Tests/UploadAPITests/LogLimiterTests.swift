import Logging
import Synchronization
import Testing
@testable import UploadAPI

/// Lines held back are told: at the next line let through, or, after a burst followed by quiet, in
/// a line of their own at the interval's end (a burst left one line as the whole of its trace).
struct LogLimiterTests {
    @Test func linesHeldBack_areToldAtTheNextLine_orAtTheIntervalsEnd() async throws {
        let told = Mutex<[Int]>([])
        let logger = Logger(label: "test")
        let limiter = LogLimiter(interval: .seconds(1)) { _, count in told.withLock { $0.append(count) } }
        #expect(limiter.admit(to: logger) == 0)
        #expect(limiter.admit(to: logger) == nil && limiter.admit(to: logger) == nil && limiter.admit(to: logger) == nil)
        // Quiet: the three are told once the interval ends, in a line of their own (on a dispatch
        // timer: a task's sleep, on a cooperative pool other tests held up, once took over 30 s).
        let deadline = ContinuousClock.now + .seconds(30)
        while told.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(told.withLock { $0 } == [3])
        // The next line let through does not count them again, and nothing held back since
        // makes no line of its own.
        #expect(limiter.admit(to: logger) == 0)
        try await Task.sleep(for: .milliseconds(1_300))
        #expect(told.withLock { $0 } == [3])
    }
}
