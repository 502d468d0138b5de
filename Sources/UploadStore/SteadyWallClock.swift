import Foundation
import Logging
import Synchronization
import UploadCore

/// The rule that holds the wall clock's steps off, as ntpd holds a step off until it has lasted its
/// step-out interval. A reading that agrees with the monotonic clock's account since the last one
/// (within ``tolerance``: slews and small corrections) is taken as it is. A step (a clock set wrong,
/// or right, by hand or at a VM's restore) is not: the time runs on by the monotonic clock from the
/// last agreeing reading until the step has lasted ``acceptance``, and is taken only then. Without
/// it, one minute an hour ahead expired every upload idle for less than the hour, stamped sessions
/// that outlived their key's sign-out, and (recorded times never going back) stopped the log's time,
/// and with it expiry and the retry window, for the hour.
///
/// A value, fed the two readings, so that tests give them; ``SteadyWallClock`` feeds it the system's.
public struct WallClockSteps: Sendable {
    /// How far, in milliseconds, a reading may differ from the monotonic clock's account and still
    /// be taken as it is.
    public static let tolerance: Int64 = 1_000
    /// How long, in monotonic milliseconds, a step must last before it is taken: ntpd's step-out
    /// is five to fifteen minutes.
    public static let acceptance: Int64 = 300_000

    public enum Change: Equatable, Sendable {
        /// A step of this many milliseconds was seen, and is held off.
        case held(step: Int64)
        /// A step held off has lasted ``acceptance``, and is taken.
        case taken(step: Int64)
        /// The wall clock agrees with the monotonic one again, before its step was taken.
        case ended
    }

    private var anchor: (wall: Int64, monotonic: Int64)?
    private var stepSince: Int64?

    public init() {}

    /// The time to use, in milliseconds since the epoch, for the wall clock's reading `wall` taken
    /// at `monotonic` milliseconds, and what it changed.
    public mutating func time(wall: Int64, monotonic: Int64) -> (milliseconds: Int64, change: Change?) {
        guard let last = anchor else {
            anchor = (wall, monotonic)
            return (wall, nil)
        }
        let expected = last.wall &+ (monotonic &- last.monotonic)
        let step = wall &- expected
        if step.magnitude <= Self.tolerance.magnitude {
            anchor = (wall, monotonic)
            defer { stepSince = nil }
            return (wall, stepSince == nil ? nil : .ended)
        }
        guard let since = stepSince else {
            stepSince = monotonic
            return (expected, .held(step: step))
        }
        guard monotonic &- since >= Self.acceptance else { return (expected, nil) }
        anchor = (wall, monotonic)
        stepSince = nil
        return (wall, .taken(step: step))
    }
}

/// The process's wall clock with its steps held off (``WallClockSteps``), read by ``SystemClock``.
/// The monotonic clock is `ContinuousClock` (`CLOCK_BOOTTIME`, which runs on while the machine is
/// suspended, as the wall clock does, so a resume is no step).
enum SteadyWallClock {
    private static let steps = Mutex(WallClockSteps())
    private static let origin = ContinuousClock.now

    static func now() -> Int64 {
        let wall = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        let monotonic = milliseconds(at: .now)
        let (time, change) = steps.withLock { $0.time(wall: wall, monotonic: monotonic) }
        if let change { report(change, of: "the system clock", to: Logger(label: "upload-coordinator")) }
        return time
    }

    /// `instant` in the monotonic milliseconds ``WallClockSteps`` takes.
    static func milliseconds(at instant: ContinuousClock.Instant) -> Int64 { (instant - origin).milliseconds }

    /// Logs `change` of `clock` (the system's, or the database's).
    static func report(_ change: WallClockSteps.Change, of clock: String, to logger: Logger) {
        switch change {
        case .held(let step):
            logger.warning("\(clock) stepped; times run on by the monotonic clock until the step has lasted five minutes (keep the clock set by NTP)",
                           metadata: ["clock.step_ms": "\(step)"])
        case .taken(let step):
            logger.warning("\(clock)'s step has lasted five minutes, and is taken", metadata: ["clock.step_ms": "\(step)"])
        case .ended:
            logger.notice("\(clock) agrees with the monotonic clock again; its step was never taken")
        }
    }
}
