import Crypto
import Foundation
import LogHashing
import UploadCore
import UploadStore

/// What a data folder holds of the blobs a store names: `upload-replay`'s check that the bytes
/// the log records are still there, beside its check of the log itself. A store restored without
/// its blobs, a `copy-store` whose folder's blobs were not copied beside it, a disk that lost or
/// damaged files: the log alone passes, and every pull of those layers fails.
public struct NamedBlobCheck: Sendable {
    /// How closely each blob is looked at.
    public enum Depth: String, Sendable, CaseIterable {
        /// Not at all: the store alone is checked (its blob folder is elsewhere, or not at hand).
        case none
        /// Each is a regular file of the size its layer records (a logo's size is not recorded).
        case sizes
        /// Each is, and its bytes hash to its digest: every byte is read.
        case contents
    }

    /// The distinct blobs the store names (a layer several repositories hold counts once).
    public var named = 0
    /// The bytes read and hashed (``Depth/contents``).
    public var bytesHashed: UInt64 = 0
    /// Blobs not in the folder, or that cannot be read there.
    public var missing = 0
    /// Blobs whose file holds another number of bytes than a layer naming it records (a problem
    /// line for each such layer).
    public var wrongSize = 0
    /// Blobs whose bytes do not hash to their digest.
    public var wrongContents = 0
    /// The first problems found, each naming its blob and what names it (up to ``shownProblems``).
    public var problems: [String] = []
    public static let shownProblems = 100

    public var passed: Bool { missing + wrongSize + wrongContents == 0 }

    public init() {}

    mutating func record(_ problem: String) {
        if problems.count < Self.shownProblems { problems.append(problem) }
    }
}

extension BlobStore {
    /// Looks at the file of every blob `reader`'s projections name (each completed layer's, each
    /// logo's), once per digest, reading nothing but the files and the store. The projections are
    /// read where they stand, a page per snapshot: a check beside a running `serve` sees each
    /// blob it names as it was when its page was read, and a blob is on disk before the event
    /// that names it commits.
    /// - Throws: what the store throws; a blob's own failure is a problem in the report.
    public func check(blobsNamedBy reader: any SnapshotReading, depth: NamedBlobCheck.Depth) throws -> NamedBlobCheck {
        var report = NamedBlobCheck()
        guard depth != .none else { return report }
        // What each blob's file was found to be, for the other records that name it.
        var found: [String: UInt64?] = [:]
        var wrongSized = Set<String>()
        try reader.forEachNamedBlob(atTheTail: nil) { blob in
            let size: UInt64?
            if let known = found[blob.digest] {
                size = known
            } else {
                report.named += 1
                size = look(at: blob.digest, namedBy: blob.namedBy, hashing: depth == .contents, into: &report)
                found[blob.digest] = size
            }
            if let size, let recorded = blob.size, size != recorded {
                if wrongSized.insert(blob.digest).inserted { report.wrongSize += 1 }
                report.record("\(blob.namedBy) \(blob.digest): recorded as \(recorded) bytes, its file holds \(size)")
            }
            return true
        }
        return report
    }

    /// The size of the blob's file, having hashed it when asked; `nil`, the problem recorded, when
    /// it is not there, cannot be read, or (hashed) holds other bytes.
    private func look(at digest: String, namedBy: String, hashing: Bool, into report: inout NamedBlobCheck) -> UInt64? {
        let path = blobPath(digest)
        var status = stat()
        guard stat(path, &status) == 0 || errno != ENOENT else {
            report.missing += 1
            report.record("\(namedBy) \(digest): not in \(directory)/blobs")
            return nil
        }
        let file: BlobFile
        do {
            file = try BlobFile(path: path)
        } catch {
            report.missing += 1
            report.record("\(namedBy) \(digest): \(error)")
            return nil
        }
        guard hashing else { return file.size }
        do {
            let hashed = try Self.digest(of: file, algorithm: DigestAlgorithm(of: digest) ?? .sha256)
            report.bytesHashed += file.size
            guard hashed == digest else {
                report.wrongContents += 1
                report.record("\(namedBy) \(digest): its file's bytes hash to \(hashed)")
                return nil
            }
        } catch {
            report.missing += 1
            report.record("\(namedBy) \(digest): \(error)")
            return nil
        }
        return file.size
    }

    /// The `<algorithm>:<hex>` digest of every byte of `file`.
    static func digest(of file: BlobFile, algorithm: DigestAlgorithm) throws -> String {
        switch algorithm {
        case .sha256: try digest(of: file, hasher: SHA256(), algorithm)
        case .sha512: try digest(of: file, hasher: SHA512(), algorithm)
        }
    }

    private static func digest(of file: BlobFile, hasher: some HashFunction, _ algorithm: DigestAlgorithm) throws -> String {
        var hasher = hasher
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < file.size {
            let count = try file.read(at: offset, into: buffer)
            guard count > 0 else { throw StoreError(.io, "the blob's file ended at \(offset) of its \(file.size) bytes") }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            offset += UInt64(count)
        }
        return algorithm.rawValue + ":" + Hex.encode(hasher.finalize())
    }
}
