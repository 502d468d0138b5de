import Foundation
import LogHashing
import Logging
import Synchronization
import UploadService
import UploadStore

/// When each access key last signed out of the pages: a session made before then is over.
///
/// Sessions are cookies the server signs and does not store (``PageSession``), so signing out
/// must leave a mark a copied cookie meets: the time of the key's last sign-out. Signing out
/// therefore ends every session of that key, in every browser, as "sign out everywhere" does.
///
/// Kept in the data folder (`page-sign-outs`, one `<access key id in hex> <milliseconds>` line a
/// key), which every node of a deployment shares, so that a sign-out on one node ends the session
/// on all, and across restarts. It is rewritten whole under a lock (`page-sign-outs.lock`, an
/// open-file-description lock, as the staging folder's) and renamed into place once synced; a
/// sign-out older than a session's lifetime can end no session and is dropped, so the file holds
/// at most one line per key that signed out in the last ``PageSession/lifetimeMilliseconds``.
/// Each check reads the file whole (opening it revalidates a shared filesystem's cache, where a
/// `stat` may answer from it) and parses it again only when its bytes changed.
final class PageSignOuts: Sendable {
    /// The file, or `nil` to keep sign-outs in memory only (a server without a data folder's pages: tests).
    private let path: String?
    private let logger: Logger
    private let loaded = Mutex<Loaded>(Loaded())
    private let unreadableLog = LogLimiter(interval: .seconds(60), heldBackLine: "more page sessions were refused: the record of sign-outs cannot be read")

    private struct Loaded {
        var bytes: [UInt8]?
        var times: [String: Int64] = [:]
    }

    /// Later than any sign-out a clock can record (the year 3000): a time past it is a damaged
    /// file, and one at it is not taken for a session's time (``PageSession/cookieValue(for:)``).
    static let latestTime: Int64 = 32_503_680_000_000

    /// How long a sign-out waits for another's rewrite of the file before it fails (and is tried again).
    static let lockWait = Duration.seconds(5)

    init(folder: String?, logger: Logger) {
        path = folder.map { $0 + "/" + DataFolder.pageSignOuts }
        self.logger = logger
    }

    /// When `accessKeyId` last signed out, in milliseconds since the epoch; `nil` when it has not
    /// (within a session's lifetime). `Int64.max` when the file cannot be read: no session is
    /// taken until it can (a sign-out it may hold must not be missed).
    func lastSignOut(_ accessKeyId: String) -> Int64? {
        guard let path else { return loaded.withLock { $0.times[accessKeyId] } }
        let bytes: [UInt8]
        do {
            guard let read = try Self.contents(path) else { return loaded.withLock { $0.times[accessKeyId] } }
            bytes = read
        } catch {
            return unreadable("\(error)")
        }
        if let known = loaded.withLock({ $0.bytes == bytes ? .some($0.times[accessKeyId]) : nil }) { return known }
        do {
            let times = try Self.parse(bytes, path)
            return loaded.withLock { loaded in
                loaded.times.merge(times, uniquingKeysWith: max)
                loaded.bytes = bytes
                return loaded.times[accessKeyId]
            }
        } catch {
            return unreadable("\(error)")
        }
    }

    private func unreadable(_ problem: String) -> Int64 {
        if let heldBack = unreadableLog.admit(to: logger) {
            logger.error("page sessions are refused: the record of sign-outs cannot be read", metadata: [
                "problem": "\(problem)", "log.held_back": "\(heldBack)"])
        }
        return .max
    }

    /// Records that `accessKeyId` signed out at `time` (which may be later than `now`, this
    /// node's clock: the session's own time), synced before it returns. Blocks on the file's lock
    /// (up to ``lockWait``) and its syncs: call it off the event loops.
    func record(_ accessKeyId: String, at time: Int64, now: Int64) throws {
        // Taken here only once recorded: a sign-out that failed ends the session nowhere, so that
        // no node takes it while another refuses it, and signing out again can end it.
        func taken() { loaded.withLock { $0.times[accessKeyId] = max($0.times[accessKeyId] ?? time, time) } }
        guard let path else { return taken() }
        let lock = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw Self.failure("open \(path).lock") }
        defer { close(lock) }  // closing it gives up its lock
        var range = flock()
        range.l_type = Int16(F_WRLCK)
        range.l_whence = Int16(SEEK_SET)
        let deadline = ContinuousClock.now + Self.lockWait
        while fcntl(lock, FileLock.setOpenFileDescriptionLock, &range) != 0 {
            guard [EINTR, EAGAIN, EACCES].contains(errno) else { throw Self.failure("lock \(path).lock") }
            guard ContinuousClock.now < deadline else { throw StoreError(.io, "\(path).lock stayed locked by another sign-out for \(Self.lockWait)") }
            usleep(10_000)
        }
        var times = try Self.contents(path).map { try Self.parse($0, path) } ?? [:]
        times[accessKeyId] = max(times[accessKeyId] ?? time, time)
        // Dropped by this node's clock, less a day for other nodes' (never by a time a cookie gave).
        let horizon = min(time, now) - PageSession.lifetimeMilliseconds - 86_400_000
        let text = times.filter { $0.value > horizon }.sorted { $0.key < $1.key }
            .map { "\(Hex.encode(Array($0.key.utf8))) \($0.value)\n" }.joined()
        try Self.replace(path, with: Array(text.utf8))
        taken()
    }

    /// The file's bytes; `nil` when there is none.
    private static func contents(_ path: String) throws -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw failure("open \(path)")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count >= 0 else {
                if errno == EINTR { continue }
                throw failure("read \(path)")
            }
            if count == 0 { return bytes }
            bytes += buffer[..<count]
        }
    }

    /// The file's sign-outs; a line that is not one is a damaged file, not one to skip.
    private static func parse(_ bytes: [UInt8], _ path: String) throws -> [String: Int64] {
        var times: [String: Int64] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let key = Hex.decode(String(fields[0])), let id = String(validating: key, as: UTF8.self),
                  let time = Int64(fields[1]), (0...latestTime).contains(time) else {
                throw StoreError(.corrupt, "\(path) holds a line that is no sign-out: \(line.prefix(80))")
            }
            times[id] = max(times[id] ?? time, time)
        }
        return times
    }

    /// Writes `bytes` beside `path`, syncs them, renames them into place and syncs the folder.
    private static func replace(_ path: String, with bytes: [UInt8]) throws {
        let temporary = path + ".new"  // only the lock's holder writes it
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("create \(temporary)") }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        let problem = errno
        close(fd)
        guard written else { errno = problem; throw failure("write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw failure("rename \(temporary)") }
        let folder = open(PathNames.folder(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folder >= 0 else { throw failure("open the folder of \(path)") }
        defer { close(folder) }
        guard fsync(folder) == 0 else { throw failure("sync the folder of \(path)") }
    }

    private static func failure(_ what: String) -> StoreError {
        StoreError(.io, "cannot \(what): \(String(cString: strerror(errno)))")
    }
}
