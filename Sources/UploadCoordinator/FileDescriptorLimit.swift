import Foundation

/// Raises the process's open-file limit so that `--max-connections` is reached before the
/// descriptors run out: a server out of descriptors cannot accept, and spins trying.
enum FileDescriptorLimit {
    /// Descriptors each connection may hold at once: its socket, a spooled body or a staging or
    /// blob file, and the lock of the upload its part or chunk is written to (a streaming chunk
    /// holds all three: counted as two, about 750 of them ran the process out).
    static let perConnection = 3
    /// Descriptors beyond the connections': the store, logs, the thread pools.
    static let headroom = 256

    /// The fewest descriptors `serve` starts with: its event loops, thread pools, store and a
    /// few connections. Below about 20, NIO's event loops trapped as they were made (SIGILL).
    static let leastToServe: rlim_t = 64

    struct Shortage: Error, CustomStringConvertible { let description: String }

    /// - Returns: the limit and what was wanted, when the limit stays below it (to be logged).
    /// - Throws: ``Shortage`` when the limit cannot reach ``leastToServe``.
    static func raise(toHold connections: Int) throws -> (limit: rlim_t, wanted: rlim_t)? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let wanted = rlim_t(perConnection * connections + headroom)
        guard limit.rlim_cur < wanted else { return nil }
        let before = limit.rlim_cur
        limit.rlim_cur = min(wanted, limit.rlim_max)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { limit.rlim_cur = before }
        guard limit.rlim_cur >= leastToServe else {
            throw Shortage(description: "the open-file limit is \(limit.rlim_cur) (hard limit \(limit.rlim_max)); serve needs at least \(leastToServe), and \(wanted) for --max-connections \(connections): raise it (ulimit -n)")
        }
        return limit.rlim_cur < wanted ? (limit.rlim_cur, wanted) : nil
    }
}
