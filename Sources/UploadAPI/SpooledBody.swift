import Crypto
import Foundation
import UploadStore
import LogHashing
import Hummingbird
import NIOCore

/// A request body read before its signature can be checked.
///
/// botocore signs the body's SHA-256 without sending it, so a known key's signature can be
/// checked only once the whole body has been read. Until then the sender is not trusted: the first
/// ``memoryLimit`` bytes stay in memory and the rest go, ``memoryLimit`` at a time, to an unnamed
/// temporary file (created and unlinked at once, so it disappears with its descriptor on refusal,
/// on success and on a crash), within a ``ByteBudget`` shared by all connections
/// (``ByteBudget/spool(limit:limitPerAddress:)``). The hash is computed as the bytes arrive. Memory
/// per connection stays under twice ``memoryLimit`` plus NIO's read buffers, whatever the body's
/// size, until the signature holds.
struct SpooledBody: ~Copyable {
    static let memoryLimit = 64 * 1024

    private let head: [UInt8]
    private let file: Int32
    private let budget: ByteBudget
    /// The sender's address as the budget counts it (``ConnectionsByAddress/key(of:)``).
    private let address: [UInt8]?
    /// Bytes in the file, counted against the budget until this body goes.
    private let spooled: Int
    let count: Int
    /// Hex SHA-256 of every byte read.
    let sha256: String

    /// Reads `body` whole, refusing it with 413 past `limit` bytes, with ThrottlingException
    /// when the spool budget is spent (or the share of it of the sender's `address`), and with 408
    /// once `longestArrival` has passed.
    /// - Parameter ensureRoom: throws when the disk cannot take this many bytes more; asked before
    ///   the file's first write and before each mebibyte after it. The spool shares the disk with
    ///   the log, and its budget alone (4 GiB by default) could take the whole reserve kept for it.
    init(
        reading body: ClientBody, limit: Int, spoolDirectory: String, budget: ByteBudget, from address: [UInt8]? = nil,
        longestArrival: Duration, ensureRoom: (Int) throws -> Void = { _ in }
    ) async throws {
        let deadline = ContinuousClock.now + longestArrival
        var hasher = SHA256()
        var head: [UInt8] = []
        var pending: [UInt8] = []
        var file: Int32 = -1
        var spooled = 0
        var count = 0
        var roomCheckedUpTo = 0
        func flush() throws {
            guard !pending.isEmpty else { return }
            if spooled + pending.count > roomCheckedUpTo {
                try ensureRoom(max(pending.count, 1 << 20))
                roomCheckedUpTo = spooled + max(pending.count, 1 << 20)
            }
            guard budget.take(pending.count, from: address) else {
                throw APIError(type: "ThrottlingException", message: "Too many request bodies are being received at once; retry shortly", status: .badRequest)
            }
            spooled += pending.count
            if file < 0 { file = try Self.temporaryFile(in: spoolDirectory) }
            // Writes of 64 KiB into the page cache, never synced: cheap enough for the request's
            // own task, and the only copy of untrusted bytes outside memory.
            try pending.withUnsafeBytes { try Self.writeAll($0, to: file) }
            pending.removeAll(keepingCapacity: true)
        }
        do {
            for try await buffer in body {
                count += buffer.readableBytes
                guard count <= limit else { throw HTTPError(.contentTooLarge) }
                guard ContinuousClock.now < deadline else {
                    throw APIError(
                        type: "RequestTimeoutException", message: "The request body took longer than \(longestArrival) to arrive",
                        status: .requestTimeout)
                }
                buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                if file < 0, pending.isEmpty, head.count + buffer.readableBytes <= Self.memoryLimit {
                    head.append(contentsOf: buffer.readableBytesView)
                    continue
                }
                pending.append(contentsOf: buffer.readableBytesView)
                if pending.count >= Self.memoryLimit { try flush() }
            }
            try flush()
        } catch {
            if file >= 0 { close(file) }
            budget.give(spooled, from: address)
            throw error
        }
        self.head = head
        self.file = file
        self.budget = budget
        self.address = address
        self.spooled = spooled
        self.count = count
        self.sha256 = Hex.encode(hasher.finalize())
    }

    deinit {
        if file >= 0 { close(file) }
        budget.give(spooled, from: address)
    }

    /// Every byte of the body, for a request whose signature held.
    consuming func bytes() throws -> [UInt8] {
        guard file >= 0 else { return head }
        var all = head
        all.reserveCapacity(count)
        let spooled = self.spooled, file = self.file
        all += [UInt8](unsafeUninitializedCapacity: spooled) { buffer, initialized in
            var offset = 0
            while offset < spooled {
                let n = pread(file, buffer.baseAddress! + offset, spooled - offset, off_t(offset))
                if n <= 0 { break }
                offset += n
            }
            initialized = offset
        }
        guard all.count == count else { throw SpoolError("the spooled body could not be read back") }
        return all
    }

    /// An unnamed file in `directory`: created exclusively, then unlinked, so nothing is left behind.
    private static func temporaryFile(in directory: String) throws -> Int32 {
        var template = Array((directory + "/" + leftoverPrefix + "XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SpoolError("cannot create a spool file in \(directory)", errno: errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return fd
    }

    static let leftoverPrefix = "body-"

    /// Removes spool files a crash left between their creation and their unlinking (a moment).
    static func removeLeftovers(in directory: String) {
        let old = Date().addingTimeInterval(-60)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(leftoverPrefix) {
            let path = directory + "/" + name
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, modified < old {
                unlink(path)
            }
        }
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            guard n > 0 else { throw SpoolError("cannot spool a request body", errno: n < 0 ? errno : nil) }
            offset += n
        }
    }
}

extension ByteBudget {
    /// The bytes all connections may have spooled at once, by default (`--max-spooled-bytes`).
    public static let defaultSpoolBytes = 4 << 30

    /// A budget of bytes spooled (``SpooledBody``): each client address's share never less than
    /// the largest body (30 MB, a 20 MiB part in base64), which a smaller share would refuse from
    /// every address.
    public static func spool(limit: Int = defaultSpoolBytes, limitPerAddress: Int? = nil) -> ByteBudget {
        ByteBudget(limit: limit, limitPerAddress: limitPerAddress, smallestShare: APIRequestContext.largestBody)
    }
}

extension SpooledBody {
    /// The longest a body not yet authenticated may take to arrive, by default: the largest body
    /// (30 MB, a 20 MiB part in base64) at 50 KB/s. A sender that knows only an access key id (ids
    /// are not secret: the log records them) could otherwise hold its share of the budget for
    /// hours, trickling at the lowest rate the connection guard allows.
    static let defaultLongestArrival = Duration.seconds(600)
}

/// A request body the server could not spool: its own fault, never the body's.
struct SpoolError: Error, CustomStringConvertible {
    /// For the log: it names the spool folder.
    let description: String
    /// The failed call's `errno`, when one failed.
    let code: Int32?

    init(_ description: String, errno code: Int32? = nil) {
        self.description = description + (code.map { ": " + String(cString: strerror($0)) } ?? "")
        self.code = code
    }

    /// What the caller is told: why, without the server's paths.
    var messageForCallers: String {
        if let code, let passing = StoreError.passing(errno: code) { return passing + "; try again" }
        if code == ENOSPC || code == EDQUOT { return "The server's disk is full; it could not store the request body" }
        return "The server could not store the request body; its log says why"
    }
}
