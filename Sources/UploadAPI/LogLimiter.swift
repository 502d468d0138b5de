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
    /// Tells how many were held back when no line came after them.
    private let tell: @Sendable (Int) -> Void
    private let state = Locked<(last: ContinuousClock.Instant?, heldBack: Int, toldAtEnd: Bool)>((nil, 0, false))

    /// - Parameter heldBackLine: the line that counts those held back when no line came after them.
    convenience init(interval: Duration, heldBackLine: Logger.Message) {
        self.init(interval: interval) { Logger(label: "upload-coordinator").warning(heldBackLine, metadata: ["log.held_back": "\($0)"]) }
    }

    init(interval: Duration, tell: @escaping @Sendable (Int) -> Void) {
        self.interval = interval
        self.tell = tell
    }

    /// How many lines were held back since the last one let through, when this one may go; `nil`
    /// when it is held back too.
    func admit() -> Int? {
        let (admitted, endOfInterval) = state.withLock { state -> (Int?, ContinuousClock.Instant?) in
            let now = ContinuousClock.now
            if let last = state.last, now - last < interval {
                state.heldBack += 1
                defer { state.toldAtEnd = true }
                return (nil, state.toldAtEnd ? nil : last + interval)
            }
            defer { state = (now, 0, false) }
            return (state.heldBack, nil)
        }
        if let endOfInterval {
            Task {
                try? await Task.sleep(until: endOfInterval, clock: .continuous)
                self.tellHeldBack()
            }
        }
        return admitted
    }

    /// At the end of an interval in which lines were held back: unless a line let through since
    /// told them, one line counts them.
    private func tellHeldBack() {
        let heldBack = state.withLock { state -> Int in
            guard state.toldAtEnd else { return 0 }
            defer { state.heldBack = 0; state.toldAtEnd = false }
            return state.heldBack
        }
        if heldBack > 0 { tell(heldBack) }
    }
}
