import Foundation
import Logging
import UploadCore
import UploadStore

/// An online backup of an LMDB data folder: a new data folder, consistent at one log position,
/// that `serve` and `upload-replay` open as they are. See the "Operating it" section of the README.
///
/// 1. Every staging file is opened first. Parts are written at or past the recorded length and a
///    failed part is cut back only to it, so each file's first recorded bytes never change while
///    the upload lasts, and an open descriptor still reads them after the upload completes (its
///    staging became its blob), is aborted, or expires (the name is removed, not the bytes).
/// 2. The store's environments are copied, compacted, from read snapshots while writers go on
///    (``ReadOnlyStore/copy(to:)``): the log's tail then is the backup's position.
/// 3. The copy is opened once, as a store, so that its projections catch up to that position (or
///    are rebuilt from the log, when the live ones could not be read); it names the active uploads (with the bytes the log records for each) and the blobs it serves.
///    Its Merkle tree is computed again from its events (``UploadStore/Store/verifiedMerkleRoot()``):
///    LMDB keeps no checksums, and a damaged page of the log would otherwise be copied as it is.
/// 4. Blobs are immutable, so each is hard-linked (copied when the backup is on another file
///    system). Staging files change, and a link would let the restored server's start-up cut the
///    live file, so the recorded bytes of each are copied: from the file under its name now (which
///    may have replaced the one of step 1, when a refused completion unshared it from its blob),
///    or, removed since, through the descriptor of step 1 or from its completion's blob
///    (``StagingDescriptors/file(_:holding:)``).
/// 5. Everything is synced and the folder renamed into place last, so an interrupted backup
///    leaves only a hidden `.NAME.partial-…` folder beside it, never one that looks complete
///    (the next backup to the same destination removes it: ``PartialFolder``).
public enum StoreBackup {
    public struct Report: Sendable {
        public var position: UInt64 = 0
        public var rootHash = ""
        public var blobs = 0
        /// Blobs copied instead of linked (the backup on another file system).
        public var copiedBlobs = 0
        public var stagedUploads = 0
        public var stagedBytes: UInt64 = 0
        /// Blobs the store names that its folder lacks: only with `allowMissingBlobs`.
        public var missingBlobs: [String] = []
        /// Uploads in progress whose recorded bytes the folder's staging lacks (or holds fewer
        /// of): only with `allowMissingBlobs`. Their sessions are backed up without staging, as
        /// the store holds them (`serve` reports them at start).
        public var missingStaging: [String] = []
    }

    /// Files of the data folder that belong to the deployment beside the store: the log's signing
    /// key (its identity), the registry token key, generated credentials, and the pages' sign-outs
    /// (a restored folder must not take sessions back that were ended).
    static let keptFiles = [LogSigningKey.defaultFileName, DataFolder.registryTokenKey, DataFolder.generatedCredentials, DataFolder.pageSignOuts]

    /// Backs the store at `dataDirectory` up into `destination`, which ``refusal(destination:dataDirectory:)``
    /// must accept. Tries again, up to `attempts` times, in the rare case that an upload starts and
    /// ends between step 1 and its copy.
    /// - Parameter afterSnapshot: called once the environments are copied (tests hold the backup
    ///   there, to end uploads in the middle of it).
    public static func run(
        dataDirectory: String, to destination: String, settings: DecisionSettings, allowMissingBlobs: Bool = false,
        attempts: Int = 3, afterSnapshot: () async -> Void = {}, logger: Logger
    ) async throws -> Report {
        // Projections it cannot read (another layout during an upgrade, torn by a crash) are
        // copied as none: opening the copy rebuilds them from the log (step 3), and the live
        // store is left as it is.
        let live = try ReadOnlyStore(directory: dataDirectory, unreadableProjections: .readAsEmpty)
        let source = BlobStore(existing: dataDirectory)
        for attempt in 1...max(1, attempts) {
            // Private from the start: the files it receives keep the modes they have (blobs are
            // world-readable in the data folder, which is itself kept private).
            let partial = try PartialFolder(beside: destination)
            for folder in partial.abandonedRemoved { logger.notice("removed an interrupted backup's folder", metadata: ["folder": "\(folder)"]) }
            do {
                logger.info("backing up", metadata: ["partial": "\(partial.path)"])
                var report = try await backUp(live, source, into: partial.path, settings: settings, afterSnapshot: afterSnapshot, logger: logger)
                if !allowMissingBlobs {
                    // A count and the first few: a store can lack hundreds of thousands.
                    func named(_ missing: [String]) -> String {
                        missing.sorted().prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", …" : "")
                    }
                    let lacks = [
                        report.missingBlobs.isEmpty ? nil : "\(report.missingBlobs.count) of the blobs it names (\(named(report.missingBlobs)))",
                        report.missingStaging.isEmpty ? nil : "the staged bytes of \(report.missingStaging.count) uploads in progress (\(named(report.missingStaging)))",
                    ].compactMap { $0 }
                    if !lacks.isEmpty {
                        throw StoreError(.io, "the store's folder lacks \(lacks.joined(separator: " and ")); `--allow-missing-blobs` backs it up without them")
                    }
                }
                report.missingBlobs.sort()
                report.missingStaging.sort()
                if let refusal = refusal(destination: destination, dataDirectory: dataDirectory) { throw StoreError(.io, refusal) }
                try partial.publish()
                return report
            } catch let retry as UploadEndedDuringBackup where attempt < attempts {
                partial.discard()
                logger.notice("starting the backup over", metadata: ["reason": "\(retry.description)"])
            } catch {
                partial.discard()
                throw error
            }
        }
        preconditionFailure("the last attempt returns or throws")
    }

    /// Why a backup (or an LMDB copy) may not go to `destination`, or `nil` when it may: it must be
    /// new, or an empty folder (not a link to one) on the file system of its parent (where it is
    /// built before it is renamed into place, ``PartialFolder``), outside the data folder.
    public static func refusal(destination: String, dataDirectory: String?) -> String? {
        var info = stat(), parentInfo = stat()
        let parent = PathNames.folder(of: destination)
        // It is built beside its name and renamed to it: `.`, `..` or nothing name no new folder.
        let name = destination.split(separator: "/").last ?? ""
        guard !["", ".", ".."].contains(name) else { return "'\(destination)' names no new folder: give the backup's own name, e.g. \(parent == "." ? "" : parent + "/")backup" }
        guard stat(parent, &parentInfo) == 0 else {
            return "\(destination) cannot be made: \(parent), the folder to hold it, \(errno == ENOENT ? "does not exist" : String(cString: strerror(errno)))"
        }
        if let dataDirectory, let real = realpath(parent, nil), let data = realpath(dataDirectory, nil) {
            defer { free(real); free(data) }
            let (inside, folder) = (String(cString: real) + "/", String(cString: data) + "/")
            if inside.hasPrefix(folder) { return "\(destination) is inside the data folder" }
        }
        guard lstat(destination, &info) == 0 else { return nil }
        guard (info.st_mode & S_IFMT) == S_IFDIR,
              (try? FileManager.default.contentsOfDirectory(atPath: destination).isEmpty) == true else {
            return "\(destination) exists and is not an empty folder: give a new one"
        }
        guard stat(parent, &parentInfo) == 0, parentInfo.st_dev == info.st_dev, !PathNames.isMountPoint(destination) else {
            return "\(destination) is a mount point: give a new folder inside it"
        }
        return nil
    }

    private static func backUp(
        _ live: ReadOnlyStore, _ source: BlobStore, into partial: String, settings: DecisionSettings, afterSnapshot: () async -> Void,
        logger: Logger
    ) async throws -> Report {
        var report = Report()
        // From before the snapshot until the backup ends: no collection removes a blob it names.
        let collectionsHeldOff = try await holdOffCollections(source, logger)
        defer { collectionsHeldOff.release() }
        // None runs now: what one killed part way left moved aside is named, and goes back first.
        for failure in source.restoreAfterAKilledCollection(heldOff: true) { logger.warning("\(failure)") }
        let staged = StagingDescriptors(source.staging)
        defer { staged.close() }
        let tail = try live.copy(to: partial)
        await afterSnapshot()
        let copy = try Store(StoreConfiguration(directory: partial, settings: settings))
        let opened = Result {
            let (position, root) = try copy.verifiedMerkleRoot()
            let sessions = try copy.read { reader in try reader.allActiveUploads().compactMap { try reader.session($0) } }
            return (position, root, sessions, try copy.referencedBlobDigests())
        }
        await copy.close()
        let (position, root, sessions, digests) = try opened.get()
        guard position == tail else { throw StoreError(.corrupt, "the copy's log ends at \(position), its snapshot at \(tail)") }
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
            guard let file = try staged.file(session.uploadId, holding: length)
                ?? blobOfCompletion(session.uploadId, live, source, after: position).map({ try staged.hold(session.uploadId, $0) }) else {
                report.missingStaging.append(session.uploadId)
                continue
            }
            try BlobStore.copyFile(from: file.descriptor, named: "the staging of upload \(session.uploadId)", length: length,
                                   to: target.stagingPath(session.uploadId), mode: 0o600)
            report.stagedUploads += 1
            report.stagedBytes += length
        }
        for name in keptFiles where FileManager.default.fileExists(atPath: source.directory + "/" + name) {
            // Secrets: private in the backup, whatever the source file's mode had become.
            try BlobStore.copyFile(source.directory + "/" + name, length: nil, to: partial + "/" + name, mode: 0o600)
        }
        // Two levels down; the folders directly inside, and the backup's own, are synced as it is
        // published (PartialFolder).
        for directory in DigestAlgorithm.allCases.map({ partial + "/blobs/" + $0.rawValue }) {
            try BlobStore.syncDirectory(directory)
        }
        return report
    }

    /// Holds blob collections off (``BlobStore/holdOffCollections()``), waiting up to ten
    /// minutes for one running now to end.
    private static func holdOffCollections(_ blobs: BlobStore, _ logger: Logger) async throws -> FileLock {
        let started = ContinuousClock.now
        while true {
            if let held = try blobs.holdOffCollections() { return held }
            if ContinuousClock.now - started < .milliseconds(200) { logger.notice("waiting for a blob collection (garbage-collect) to end") }
            guard ContinuousClock.now - started < .seconds(600) else {
                throw StoreError(.io, "a blob collection (garbage-collect) has held \(blobs.directory) for ten minutes: back up once it ends")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// For an upload whose staging file appeared after step 1 and is gone now: the blob its
    /// completion made of it; `nil` when none did (the folder lacks what the log records). One
    /// aborted or expired since cannot be read any more: start over.
    private static func blobOfCompletion(_ uploadId: String, _ live: ReadOnlyStore, _ source: BlobStore, after position: UInt64) throws -> String? {
        var cursor = position
        while true {
            let page = try live.read { try $0.events(after: cursor, limit: 1024, byteBudget: EventEnvelope.pageBytes) }
            for envelope in page {
                switch envelope.event {
                case .layerUploadCompleted(let completed) where completed.uploadId == uploadId:
                    return source.blobPath(completed.layerDigest)
                case .uploadAborted(let ended) where ended.uploadId == uploadId:
                    throw UploadEndedDuringBackup(description: "upload \(uploadId) was aborted while the backup copied it")
                case .uploadExpired(let ended) where ended.uploadId == uploadId:
                    throw UploadEndedDuringBackup(description: "upload \(uploadId) expired while the backup copied it")
                default: continue
                }
            }
            guard let last = page.last else { break }
            cursor = last.position
        }
        return nil
    }

    struct UploadEndedDuringBackup: Error, CustomStringConvertible {
        let description: String
    }

    /// Hard-links `source` to `destination`, or copies it where the two cannot share a file.
    /// - Returns: whether it linked.
    private static func linkOrCopy(_ source: String, to destination: String) throws -> Bool {
        if link(source, destination) == 0 { return true }
        let failure = errno
        guard [EXDEV, EPERM, ENOTSUP, EMLINK].contains(failure) else {
            throw StoreError(.io, "link \(destination): \(String(cString: strerror(failure)))")
        }
        try BlobStore.copyFile(source, length: nil, to: destination)
        return false
    }
}

/// Read descriptors of every staging file there is, taken before the snapshot (step 1).
final class StagingDescriptors {
    /// One open descriptor, closed by its owner.
    struct Held {
        let descriptor: Int32
        init?(path: String) {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return nil }
        }

        var size: UInt64 {
            var info = stat()
            return fstat(descriptor, &info) == 0 ? UInt64(info.st_size) : 0
        }

        /// The names the file has now (0 once removed).
        var links: UInt64 {
            var info = stat()
            return fstat(descriptor, &info) == 0 ? UInt64(info.st_nlink) : 1
        }
    }

    /// Descriptors left free for the copy itself (LMDB, the copy opened as a store, blobs, keys).
    static let spare = 128

    private let folder: String
    private var held: [String: Held] = [:]

    init(_ folder: String) {
        self.folder = folder
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        // Past the limit (less the spare), the rest are opened by name when copied, as later ones are.
        let most = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? max(0, Int(min(limit.rlim_cur, 1 << 20)) - Self.spare) : 0
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).prefix(most) {
            if let file = Held(path: folder + "/" + name) { held[name] = file }
        }
    }

    /// A descriptor of the upload's staged bytes holding at least `length` of them (the length the
    /// snapshot records); `nil` when none can be trusted to, and the caller looks for the blob its
    /// completion made.
    /// - The file under the name now, first: nothing writes below an upload's recorded length, so
    ///   its first `length` bytes are the recorded ones, even when it replaced the file of step 1
    ///   (a refused completion unshares a staging file that is also a blob).
    /// - Else, removed since, the one from step 1 if it has no name left: it was the staging file
    ///   until it was removed. One that still has a name was replaced, and is a blob now.
    func file(_ uploadId: String, holding length: UInt64) -> Held? {
        if let current = Held(path: folder + "/" + uploadId) {
            if let previous = held.updateValue(current, forKey: uploadId) { _ = Glibc.close(previous.descriptor) }
            return current.size >= length ? current : nil
        }
        if let file = held[uploadId], file.size >= length, file.links == 0 { return file }
        return nil
    }

    /// Opens `path` (a blob, standing for the upload's staging) and holds it as the upload's.
    func hold(_ uploadId: String, _ path: String) throws -> Held {
        guard let file = Held(path: path) else { throw BlobStore.posixError("open \(path)") }
        if let previous = held.updateValue(file, forKey: uploadId) { _ = Glibc.close(previous.descriptor) }
        return file
    }

    func close() {
        for file in held.values { _ = Glibc.close(file.descriptor) }
        held = [:]
    }
}
