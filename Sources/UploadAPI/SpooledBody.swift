import Crypto
import Foundation
import Hummingbird
import NIOCore

/// A request body read before its signature can be checked.
///
/// botocore signs the body's SHA-256 without sending it, so a known key's signature can be
/// checked only once the whole body has been read. Until then the sender is not trusted: the first
/// ``memoryLimit`` bytes stay in memory and the rest go to an unnamed temporary file (created and
/// unlinked at once, so it disappears with the descriptor on refusal, on success and on a crash).
/// The hash is computed as the bytes arrive. Memory per connection stays at ``memoryLimit`` plus
/// NIO's read buffers, whatever the body's size, until the signature holds.
struct SpooledBody: ~Copyable {
    static let memoryLimit = 64 * 1024

    private var head: [UInt8] = []
    private var file: Int32 = -1
    private(set) var count = 0
    /// Hex SHA-256 of every byte read.
    let sha256: String

    /// Reads `body` whole, refusing it with 413 past `limit` bytes.
    init(reading body: RequestBody, limit: Int, spoolDirectory: String) async throws {
        var hasher = SHA256()
        var head: [UInt8] = []
        var file: Int32 = -1
        var count = 0
        do {
            for try await buffer in body {
                count += buffer.readableBytes
                guard count <= limit else { throw HTTPError(.contentTooLarge) }
                buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                if file < 0, head.count + buffer.readableBytes <= Self.memoryLimit {
                    head.append(contentsOf: buffer.readableBytesView)
                    continue
                }
                if file < 0 { file = try Self.temporaryFile(in: spoolDirectory) }
                // Page-cache writes of a few kilobytes, never synced: cheap enough for the
                // request's own task, and the only copy of untrusted bytes outside memory.
                try buffer.withUnsafeReadableBytes { try Self.writeAll($0, to: file) }
            }
        } catch {
            if file >= 0 { close(file) }
            throw error
        }
        self.head = head
        self.file = file
        self.count = count
        self.sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    deinit {
        if file >= 0 { close(file) }
    }

    /// Every byte of the body, for a request whose signature held.
    consuming func bytes() throws -> [UInt8] {
        guard file >= 0 else { return head }
        var all = head
        let spooled = count - head.count
        all.reserveCapacity(count)
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
        var template = Array((directory + "/body-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SpoolError("cannot create a spool file in \(directory): \(String(cString: strerror(errno)))") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return fd
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            guard n > 0 else { throw SpoolError("cannot spool a request body: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}

struct SpoolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
