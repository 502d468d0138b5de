import Foundation

/// Standard error written by a thread of its own (`uc-log`), so that no log line waits on the
/// stream's reader: written on the caller's thread, a pipe no one read (a log collector stuck, a
/// container runtime's blocking log driver) stopped NIO's event loops once its 64 KiB filled, and
/// `serve` answered nothing, SIGTERM included, until the reader came back. Lines waiting past
/// ``capacity`` bytes are dropped, and a line says how many once the stream takes lines again.
public final class BackgroundStandardError: TextOutputStream, @unchecked Sendable {
    public static let shared = BackgroundStandardError()
    /// The most bytes of lines held for a reader that does not keep up.
    static let capacity = 4 << 20

    // `condition` guards everything below it.
    private let condition = NSCondition()
    private var lines: [String] = []
    private var bytes = 0
    private var dropped = 0
    private var writing = false
    private static let started = Locked(false)

    private init() {
        Self.started.withLock { $0 = true }
        NamedThread.start("uc-log") { [self] in run() }
    }

    public func write(_ string: String) {
        condition.lock()
        defer { condition.unlock() }
        guard bytes + string.utf8.count <= Self.capacity else {
            dropped += 1
            return
        }
        lines.append(string)
        bytes += string.utf8.count
        condition.broadcast()
    }

    /// Waits until every line held has been written, at most `limit` seconds: before the process
    /// exits. Does nothing when no line was ever logged this way.
    public static func flush(within limit: TimeInterval) {
        guard started.withLock({ $0 }) else { return }
        let deadline = Date() + limit
        let log = shared
        log.condition.lock()
        defer { log.condition.unlock() }
        while !log.lines.isEmpty || log.dropped > 0 || log.writing {
            guard log.condition.wait(until: deadline) else { return }
        }
    }

    private func run() {
        while true {
            condition.lock()
            while lines.isEmpty && dropped == 0 { condition.wait() }
            let (taken, lost) = (lines, dropped)
            (lines, bytes, dropped, writing) = ([], 0, 0, true)
            condition.unlock()
            // Most of those dropped came after those taken, which filled the room.
            let notice = lost > 0 ? "\(lost) log lines were dropped: standard error was not being read\n" : ""
            StandardStreams.error(taken.joined() + notice)
            condition.lock()
            writing = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
