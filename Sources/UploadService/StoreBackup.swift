import Foundation
import Logging
import UploadCore
import UploadStore

/// An online backup of an LMDB data folder: a new data folder, consistent at one log position,
/// that `serve` and `upload-replay` open as they are. See the "Operating it" section of the README.
///
/// 1. The store's environments are copied, compacted, from read snapshots while the writer goes
///    on (``Store/copyEnvironments(to:)``): the log's tail then is the backup's position.
/// 2. The copy is opened once, as a store, so that its projections catch up to that position;
///    it names the active uploads (with the bytes the log records for each) and the blobs it serves.
/// 3. Blobs are immutable, so each is hard-linked (copied when the folder is on another file
///    system). Staging files are not: the live server keeps writing and cutting them, and a link
///    would let a restore's start-up cut the live file. The first recorded bytes of each are
///    copied; an upload that completed since the position is read from its blob instead (its
///    staging file became that blob), and one aborted since makes the backup start over.
/// 4. Everything is synced and the folder renamed into place last, so an interrupted backup
///    leaves only a hidden `.NAME.partial-…` folder, never one that looks complete.
public enum StoreBackup {
    public struct Report: Sendable {
        public var position: UInt64 = 0
        public var rootHash = ""
        public var blobs = 0
        /// Blobs copied instead of linked (the destination on another file system).
        public var copiedBlobs = 0
        public var stagedUploads = 0
        public var stagedBytes: UInt64 = 0
        /// Blobs the store names that its folder lacks (should be none): recorded, not copied.
        public var missingBlobs: [String] = []
    }

    /// Files of the data folder that belong to the deployment beside the store: the log's signing
    /// key (its identity), the registry token key, and generated credentials.
    static let keptFiles = ["transparency-log.key", "registry-token.key", "credentials"]

    /// Backs `live` (open on `dataDirectory`) up into `destination`, which must not exist or be
    /// an empty folder. Tries up to `attempts` times when uploads end while it copies.
    public static func run(
        _ live: Store, dataDirectory: String, to destination: String, attempts: Int = 5, logger: Logger
    ) async throws -> Report {
        try checkDestination(destination)
        let parent = (destination as NSString).deletingLastPathComponent
        let name = (destination as NSString).lastPathComponent
        let source = try BlobStore(directory: dataDirectory)
        for attempt in 1...attempts {
            let partial = (parent.isEmpty ? "." : parent) + "/." + name + ".partial-" + RandomUUIDs.next()
            do {
                try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false)
                let report = try await backUp(live, source, into: partial)
                try publish(partial, as: destination)
                return report
            } catch let retry as UploadEndedDuringBackup where attempt < attempts {
                try? FileManager.default.removeItem(atPath: partial)
                logger.notice("starting the backup over", metadata: ["reason": "\(retry.description)"])
            } catch {
                try? FileManager.default.removeItem(atPath: partial)
                throw error
            }
        }
        preconditionFailure("the last attempt returns or throws")
    }

    /// Whether a backup may go to `destination`: nothing there, or an empty folder.
    public static func mayWrite(to destination: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory) else { return true }
        return isDirectory.boolValue && (try? FileManager.default.contentsOfDirectory(atPath: destination).isEmpty) == true
    }

    static func checkDestination(_ destination: String) throws {
        guard mayWrite(to: destination) else {
            throw StoreError(.io, "\(destination) exists and is not an empty folder: a backup goes into a new one")
        }
    }

    private static func backUp(_ live: Store, _ source: BlobStore, into partial: String) async throws -> Report {
        var report = Report()
        _ = try live.copyEnvironments(to: partial)
        let copy = try Store(StoreConfiguration(directory: partial, settings: live.settings))
        let opened = Result {
            let (position, root) = try copy.merkleRoot()
            let sessions = try copy.read { reader in try reader.allActiveUploads().compactMap { try reader.session($0) } }
            return (position, root, sessions, try copy.referencedBlobDigests())
        }
        await copy.close()
        let (position, root, sessions, digests) = try opened.get()
        report.position = position
        report.rootHash = root
        let target = try BlobStore(directory: partial)
        for digest in digests {
            guard FileManager.default.fileExists(atPath: source.blobPath(digest)) else {
                report.missingBlobs.append(digest)
                continue
            }
            if try !linkOrCopy(source.blobPath(digest), to: target.blobPath(digest)) { report.copiedBlobs += 1 }
            report.blobs += 1
        }
        for session in sessions where session.state == .active && session.bytesReceived > 0 {
            let length = session.bytesReceived
            let from = try stagedBytes(of: session.uploadId, length: length, in: source, live: live, after: position)
            try BlobStore.copyFile(from, length: length, to: target.stagingPath(session.uploadId))
            report.stagedUploads += 1
            report.stagedBytes += length
        }
        for name in keptFiles where FileManager.default.fileExists(atPath: source.directory + "/" + name) {
            try BlobStore.copyFile(source.directory + "/" + name, length: nil, to: partial + "/" + name)
        }
        for directory in [partial + "/staging"] + DigestAlgorithm.allCases.map({ partial + "/blobs/" + $0.rawValue }) + [partial] {
            try BlobStore.syncDirectory(directory)
        }
        return report
    }

    /// The file holding the first `length` staged bytes of an upload the backup's log has active:
    /// its staging file, or the blob its completion made of it since.
    private static func stagedBytes(of uploadId: String, length: UInt64, in source: BlobStore, live: Store, after position: UInt64) throws -> String {
        let staging = source.stagingPath(uploadId)
        if let size = try? FileManager.default.attributesOfItem(atPath: staging)[.size] as? UInt64, size >= length {
            return staging
        }
        var cursor = position
        while true {
            let page = try live.read { try $0.events(after: cursor, limit: 1024) }
            for envelope in page {
                switch envelope.event {
                case .layerUploadCompleted(let completed) where completed.uploadId == uploadId:
                    return source.blobPath(completed.layerDigest)
                case .uploadAborted(let aborted) where aborted.uploadId == uploadId:
                    throw UploadEndedDuringBackup(description: "upload \(uploadId) was aborted while the backup copied it")
                default: continue
                }
            }
            guard let last = page.last else { break }
            cursor = last.position
        }
        throw StoreError(.io, "upload \(uploadId): \(length) bytes recorded, fewer staged")
    }

    struct UploadEndedDuringBackup: Error, CustomStringConvertible {
        let description: String
    }

    /// Hard-links `source` to `destination`, or copies it where the two folders cannot share a
    /// file. - Returns: whether it linked.
    private static func linkOrCopy(_ source: String, to destination: String) throws -> Bool {
        if link(source, destination) == 0 { return true }
        guard [EXDEV, EPERM, ENOTSUP, EMLINK].contains(errno) else { throw BlobStore.posixError("link \(destination)") }
        try BlobStore.copyFile(source, length: nil, to: destination)
        return false
    }

    /// Renames the finished folder into place (over an empty one), and syncs its parent.
    private static func publish(_ partial: String, as destination: String) throws {
        try checkDestination(destination)
        guard rename(partial, destination) == 0 else { throw BlobStore.posixError("rename \(partial) to \(destination)") }
        let parent = (destination as NSString).deletingLastPathComponent
        try BlobStore.syncDirectory(parent.isEmpty ? "." : parent)
    }
}
