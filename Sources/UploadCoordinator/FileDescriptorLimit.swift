import Foundation
import Logging

/// Raises the process's open-file limit so that `--max-connections` is reached before the
/// descriptors run out: a server out of descriptors cannot accept, and spins trying.
enum FileDescriptorLimit {
    /// Descriptors each connection may hold at once: its socket, a spooled body or a staging or
    /// blob file, and the lock of the upload its part or chunk is written to (a streaming chunk
    /// holds all three: counted as two, about 750 of them ran the process out).
    static let perConnection = 3
    /// Descriptors beyond the connections': the store, logs, the thread pools.
    static let headroom = 256

    static func raise(toHold connections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = rlim_t(perConnection * connections + headroom)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 || limit.rlim_cur < wanted {
            logger.warning("the open-file limit is below --max-connections plus headroom; lower --max-connections or raise the hard limit", metadata: [
                "files.limit": "\(limit.rlim_cur)", "files.wanted": "\(wanted)"])
        }
    }
}
