import Crypto
import Foundation
import UploadCore
import LogHashing

extension BlobStore {
    /// Writes a part into an upload's staging file from `offset`, hashing as it goes; its length
    /// may be known only at its end (a registry client's streamed chunk). The file is opened at the
    /// first byte, or before it (``openFile()``); an empty chunk need create nothing; a staging file that is also a blob gets an
    /// inode of its own first (``unshareStaging(_:keeping:)``). Used by one task at a time (the
    /// upload's lock), each call on NIO's thread pool.
    public final class StagingWriter: @unchecked Sendable {
        let store: BlobStore
        let uploadId: String
        let start: off_t
        private var position: off_t
        private var fd: Int32 = -1
        private var isNew = false
        private var hasher = SHA256()
        /// The same bytes hashed in sha512 too, for a whole layer a registry client names so
        /// (``UploadService/pushWholeLayer``); `nil` otherwise.
        private var sha512: SHA512?
        /// Bytes written since the disk's free space was last checked (``BlobStore/ensureRoom(for:)``):
        /// as many as make the first write check it, whether or not the file was opened before.
        private var writtenSinceRoomChecked = 1 << 20

        init(store: BlobStore, uploadId: String, offset: UInt64, hashingIn algorithm: DigestAlgorithm) {
            self.store = store
            self.uploadId = uploadId
            start = off_t(offset)
            position = start
            if algorithm == .sha512 { sha512 = SHA512() }
        }

        deinit { abandon() }

        /// The bytes written so far.
        public var length: UInt64 { UInt64(position - start) }

        public func write(_ chunk: UnsafeRawBufferPointer) throws {
            guard chunk.count > 0 else { return }
            let limit = store.maximumLayerBytes
            guard UInt64(position) <= limit, UInt64(chunk.count) <= limit - UInt64(position) else {
                throw LayerTooLarge(maximumBytes: limit)
            }
            if writtenSinceRoomChecked >= 1 << 20 {
                try store.ensureRoom(for: UInt64(max(chunk.count, 1 << 20)))
                writtenSinceRoomChecked = 0
            }
            writtenSinceRoomChecked += chunk.count
            let path = store.stagingPath(uploadId)
            try openFile()
            hasher.update(bufferPointer: chunk)
            sha512?.update(bufferPointer: chunk)
            var written = 0
            while written < chunk.count {
                let n = pwrite(fd, chunk.baseAddress! + written, chunk.count - written, position + off_t(written))
                guard n > 0 else { throw BlobStore.posixError("write \(path)") }
                written += n
            }
            position += off_t(chunk.count)
        }

        public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

        /// Opens (a part at the start: makes) the staging file before the first byte comes: a
        /// chunk streaming into an upload then shows in the staging folder while it holds the
        /// upload's lock, which the expiry sweeper looks for there
        /// (``BlobStore/uploadsBeingWritten()``), though its first mebibyte is still buffered.
        public func openFile() throws {
            guard fd < 0 else { return }
            let path = store.stagingPath(uploadId)
            try store.unshareStaging(path, keeping: UInt64(start))
            isNew = !FileManager.default.fileExists(atPath: path)
            // Only a part at the start makes the file: one past it whose file is gone (lost,
            // never restored) would leave zeros below it, and an upload that never completes.
            fd = open(path, O_WRONLY | O_CLOEXEC | (start == 0 ? O_CREAT : 0), 0o600)
            guard fd >= 0 else {
                // The upload ended meanwhile (expiry and cancel remove staging without its
                // lock), or its bytes were lost: either way, not an upload that can go on.
                if errno == ENOENT {
                    throw CommandError(.uploadNotFound, "The upload with id '\(uploadId)' has no staged bytes any more: it has ended, or they were lost; start the upload again")
                }
                throw BlobStore.posixError("open \(path)")
            }
        }

        /// Cuts off anything past the part (bytes of a part that never committed), syncs the file
        /// (and the directory when the part starts the file: the log is about to name it) and closes it.
        /// - Parameter syncingItsName: false when the caller makes the file a blob before the log
        ///   names it (``syncName()`` then, if it does not).
        /// - Returns: the part's length and `sha256:<hex>` (`""` for an empty one, which wrote nothing).
        public func finish(syncingItsName: Bool = true) throws -> (length: UInt64, digest: String) {
            defer { abandon() }
            guard length > 0 else { return (0, "") }
            let path = store.stagingPath(uploadId)
            guard ftruncate(fd, position) == 0 else { throw BlobStore.posixError("truncate \(path)") }
            guard fsync(fd) == 0 else { throw BlobStore.posixError("fsync \(path)") }
            // Not only when this writer created it: a first chunk that failed leaves the file cut
            // back to nothing, its name maybe never synced, for the next one to find.
            if syncingItsName && (isNew || start == 0) { try syncName() }
            return (length, "sha256:" + Hex.encode(hasher.finalize()))
        }

        /// The digest in `algorithm` of the bytes written so far (the writer hashes sha512 only
        /// when made to: ``BlobStore/stagingWriter(uploadId:offset:hashingIn:)``).
        public func digest(in algorithm: DigestAlgorithm) -> String {
            guard length > 0 else { return algorithm.emptyDigest }
            switch algorithm {
            case .sha256: return "sha256:" + Hex.encode(hasher.finalize())
            case .sha512:
                guard let sha512 else { preconditionFailure("a staging writer made without sha512 was asked its sha512 digest") }
                return "sha512:" + Hex.encode(sha512.finalize())
            }
        }

        /// Makes the staging file's name durable (a sync of the staging directory).
        public func syncName() throws { try BlobStore.syncDirectory(store.staging) }

        /// Closes the file without syncing; the caller cuts staging back.
        public func abandon() {
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    /// - Parameter algorithm: besides sha256 (every part's digest), the bytes are hashed in this
    ///   algorithm too (``StagingWriter/digest(in:)``).
    public func stagingWriter(uploadId: String, offset: UInt64, hashingIn algorithm: DigestAlgorithm = .sha256) -> StagingWriter {
        StagingWriter(store: self, uploadId: uploadId, offset: offset, hashingIn: algorithm)
    }
}

/// A part or chunk that would take its upload past ``BlobStore/maximumLayerBytes``; nothing of it
/// is kept. The AWS API answers LimitExceededException, the registry 413 `SIZE_INVALID`: neither
/// is worth retrying, unlike a full disk's refusal.
public struct LayerTooLarge: Error, Sendable, CustomStringConvertible {
    public let maximumBytes: UInt64
    public var description: String { "A layer may hold at most \(maximumBytes) bytes; this one would hold more" }
}
