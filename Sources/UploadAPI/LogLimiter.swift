import Dispatch
import Logging
import UploadStore

/// Lets a log line through at most once per `interval`, and counts those held back: for lines a
/// request open to anyone can cause, which an outage would otherwise turn into one line per
/// request, and an attacker into a full disk. Those held back are told at the next line let
/// through, or, when none comes within the interval (a burst, then quiet), in a line of their own
/// at its end, so that no burst leaves a single line as the whole of its trace.
final class LogLimiter: Sendable {
    /// Requests that failed on the server's side (500), of the AWS API and of the registry: an
    /// outage (a full disk, a database restarting, views behind the log) fails every request,
    /// and `/metrics` counts each of them; the log says why, a line a second.
    static let requestFailures = LogLimiter(interval: .seconds(1), heldBackLine: "more requests failed on the server's side, as the last line logged says")

    let interval: Duration
    /// Tells, to the logger of the last line held back, how many were held back when no line came
    /// after them.
    private let tell: @Sendable (Logger, Int) -> Void
    private let state = Locked<State>(State())

    private struct State {
        var last: ContinuousClock.Instant?
        var heldBack = 0
        /// The interval (its start) whose end a task will tell of: a task armed for an earlier
        /// interval, running late, tells nothing of a later one.
        var endArmedFor: ContinuousClock.Instant?
        var logger: Logger?
    }

    /// - Parameter heldBackLine: the line that counts those held back when no line came after them.
    convenience init(interval: Duration, heldBackLine: Logger.Message) {
        self.init(interval: interval) { logger, count in logger.warning(heldBackLine, metadata: ["log.held_back": "\(count)"]) }
    }

    init(interval: Duration, tell: @escaping @Sendable (Logger, Int) -> Void) {
        self.interval = interval
        self.tell = tell
    }

    /// How many lines were held back since the last one let through, when this one may go (to
    /// `logger`); `nil` when it is held back too.
    func admit(to logger: Logger) -> Int? {
        let (admitted, arm) = state.withLock { state -> (Int?, ContinuousClock.Instant?) in
            let now = ContinuousClock.now
            if let last = state.last, now - last < interval {
                state.heldBack += 1
                state.logger = logger
                guard state.endArmedFor != last else { return (nil, nil) }
                state.endArmedFor = last
                return (nil, last)
            }
            defer { state = State(last: now) }
            return (state.heldBack, nil)
        }
        if let arm {
            // On a dispatch timer, not a task: the interval's end is told on time even while the
            // cooperative pool is held up (a loaded host kept a task's sleep from ending for 30 s).
            let wait = max((arm + interval) - ContinuousClock.now, .zero)
            let nanoseconds = Int(wait.components.seconds) * 1_000_000_000 + Int(wait.components.attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { self.tellHeldBack(armedFor: arm) }
        }
        return admitted
    }

    /// At the end of the interval that began at `start`, if lines were held back in it and no line
    /// let through since told them: one line counts them.
    private func tellHeldBack(armedFor start: ContinuousClock.Instant) {
        let held = state.withLock { state -> (Logger, Int)? in
            guard state.endArmedFor == start, state.last == start, state.heldBack > 0, let logger = state.logger else { return nil }
            defer { state.heldBack = 0; state.endArmedFor = nil }
            return (logger, state.heldBack)
        }
        if let (logger, count) = held { tell(logger, count) }
    }
}
