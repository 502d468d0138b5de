/// A point in time as whole milliseconds since the Unix epoch, UTC.
///
/// The domain never reads a clock: time comes in as a value from an injected ``Clock``.
/// Integers, not floating point, so that encoding and comparison are exact.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        a.millisecondsSinceEpoch < b.millisecondsSinceEpoch
    }

    /// Seconds since the epoch, as AWS JSON timestamps are written (e.g. `1700000000.123`).
    public var epochSeconds: Double { Double(millisecondsSinceEpoch) / 1000 }

    /// ISO 8601 in UTC with milliseconds, e.g. `2026-11-29T16:05:16.123Z`. Computed by hand
    /// (Hinnant's civil-from-days) so that it needs no locale, time zone or formatter state.
    public var iso8601: String {
        let ms = millisecondsSinceEpoch
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let msOfDay = ms - days * 86_400_000
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(msOfDay / 3_600_000, 2)):"
            + "\(pad(msOfDay / 60_000 % 60, 2)):\(pad(msOfDay / 1000 % 60, 2)).\(pad(msOfDay % 1000, 3))Z"
    }

    public var description: String { iso8601 }
}

/// Where the write path gets the time from. Injected so that tests and replay are deterministic.
public protocol Clock: Sendable {
    func now() -> Timestamp
}

/// Where the write path gets fresh upload ids from. Injected for the same reason as ``Clock``.
public protocol UploadIDGenerator: Sendable {
    /// A fresh lowercase UUID string, e.g. `0f8c1a2e-…`.
    func next() -> String
}

extension Duration {
    /// The duration in seconds, as a `Double`: for rates and reports, never for what is stored.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in whole nanoseconds (metrics timers take these).
    public var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
    /// The duration in whole milliseconds, `Int64.max` when it does not fit (an unbounded limit).
    public var milliseconds: Int64 {
        let (whole, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? .max : whole + components.attoseconds / 1_000_000_000_000_000
    }
}
