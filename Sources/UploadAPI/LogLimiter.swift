import UploadStore

/// Lets a log line through at most once per `interval`, and counts those held back: for lines a
/// request open to anyone can cause, which an outage would otherwise turn into one line per
/// request, and an attacker into a full disk.
final class LogLimiter: Sendable {
    /// Requests that failed on the server's side (500), of the AWS API and of the registry: an
    /// outage (a full disk, a database restarting, views behind the log) fails every request,
    /// and `/metrics` counts each of them; the log says why, a line a second.
    static let requestFailures = LogLimiter(interval: .seconds(1))

    let interval: Duration
    private let state = Locked<(last: ContinuousClock.Instant?, heldBack: Int)>((nil, 0))

    init(interval: Duration) { self.interval = interval }

    /// How many lines were held back since the last one let through, when this one may go; `nil`
    /// when it is held back too.
    func admit() -> Int? {
        state.withLock { state in
            let now = ContinuousClock.now
            if let last = state.last, now - last < interval {
                state.heldBack += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.heldBack
        }
    }
}
