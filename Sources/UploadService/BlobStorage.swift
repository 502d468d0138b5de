import Foundation
import UploadCore
public import UploadStore

/// Completed layers' bytes, by digest: the part of the blob store every node of a deployment
/// shares. ``BlobStore`` keeps them in its folder, which PostgreSQL nodes share over a shared
/// filesystem; object storage can come later as another implementation of these few operations.
/// (Staging, an upload's parts in progress, stays in the folder of ``BlobStore``.)
public protocol BlobStorage: Sendable {
    /// The size of the blob `digest` names, `nil` when none is kept.
    func blobSize(_ digest: String) -> UInt64?
    /// Claims the blob `digest` names for an event about to name it, and gives its size once its
    /// name is durable; `nil` when none is kept, or the one kept cannot be claimed (the caller
    /// writes it anew, or does without). Every
    /// command that will name a blob it did not write itself claims it first (a mount, a logo kept
    /// before; ``commitBlob(_:digest:)`` and ``adoptStaged(_:digest:size:)`` claim what they keep):
    /// a blob collection that began before keeps a blob claimed since, and one that removed it
    /// first leaves it missing here (``BlobStore/collectGarbage(minimumAge:dryRun:force:storeLastRecorded:named:judged:movedAside:)``). A blob another request is keeping
    /// can also be seen before its name is synced, which this syncs.
    func claimBlob(_ digest: String) throws -> UInt64?
    /// Marks blobs used now, without claiming them for an event: a deleted repository's, a logo
    /// replaced, so that no collection removes them within its minimum age (a backup of the
    /// database taken before may still name them, its blob copy not yet made), each stamp synced.
    /// A blob that is not there is passed over (nothing can remove it); any other failure (a file
    /// this process may not stamp, another user's) throws, and the caller records nothing, since
    /// no collection would then spare the blobs.
    func markUsed(_ digests: [String]) throws
    /// Keeps `temporary` (a file of exactly the blob's bytes, from
    /// ``BlobStore/hashAndCopyStaged(uploadId:length:algorithm:)``, synced by ``BlobStore/syncFile(_:)``) as the blob `digest`, and
    /// consumes it; a blob already kept is claimed and kept as it is (it holds the same bytes).
    func commitBlob(_ temporary: String, digest: String) throws
    /// Takes the staged file at `path`, which holds exactly the blob (`size` bytes), as the blob
    /// `digest` without copying it, where the storage can (a hard link in the same folder), and
    /// claims it (``claimBlob(_:)``). The
    /// staged file keeps its name and bytes: it is removed only once the layer is recorded, and a
    /// write to it first gives it an inode of its own (``BlobStore/StagingWriter``).
    /// - Returns: `false`, having done nothing, when it cannot: the caller copies it instead.
    func adoptStaged(_ path: String, digest: String, size: UInt64) throws -> Bool
    /// Opens the blob for reading at offsets (downloads, and ranges of them).
    func openBlob(_ digest: String) throws -> any BlobReader
}

/// An open blob.
public protocol BlobReader: Sendable {
    /// Its size in bytes, as the storage holds it (a reader compares it with the layer's record).
    var size: UInt64 { get }
    /// Reads into `buffer` from `offset`. - Returns: the bytes read; fewer than asked only at the end.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension BlobStorage {
    public func hasBlob(_ digest: String) -> Bool { blobSize(digest) != nil }

    /// The completed layers and logos whose blob is not kept (should be none). Visits every one,
    /// a page of them per read snapshot, so `serve` runs it after it is ready; it stops early, with
    /// what it found so far, once `stopped` says so.
    public func missingBlobs(in store: any EventStore, stopped: () -> Bool) throws -> [String] {
        var missing: [String] = []
        try store.forEachNamedBlob(atTheTail: nil) { blob in
            if !hasBlob(blob.digest) { missing.append("\(blob.namedBy) \(blob.digest): recorded, no blob") }
            return !stopped()
        }
        return missing
    }
}

/// A blob file of the folder, open for `pread`, closed when the last reference goes.
final class BlobFile: BlobReader {
    private let descriptor: Int32
    let size: UInt64

    /// Opens the regular file at `path`: anything else there (a folder, a device put in its place
    /// by hand) is refused, not served as bytes it does not have.
    init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StoreError(.io, "the blob's file \(path) cannot be opened: \(String(cString: strerror(errno)))") }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw StoreError(.corrupt, "the blob's file \(path) is not a regular file")
        }
        size = UInt64(status.st_size)
    }

    deinit { close(descriptor) }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = pread(descriptor, buffer.baseAddress, buffer.count, off_t(offset))
        guard count >= 0 else { throw StoreError(.io, "reading a blob failed: \(String(cString: strerror(errno)))") }
        return count
    }
}
