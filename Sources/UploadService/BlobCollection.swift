import Foundation
import Synchronization
import UploadCore
import UploadStore

/// Removing the blobs no repository names: those of deleted repositories, and those a push left
/// when its commit was refused (its repository deleted meanwhile). `upload-coordinator
/// garbage-collect` runs it while `serve` runs too.
///
/// A blob is removed only when all of these hold:
/// - no layer or logo names it, in projections read at the log's tail
///   (``UploadStore/SnapshotReading/referencedBlobDigests(patience:)``), read *after* this
///   collection read the file system's clock (and, on PostgreSQL, after every commit then in
///   flight became visible);
/// - it was last used (claimed by a command about to name it, ``claimBlob(_:)``; kept; or held by a
///   repository being deleted, ``markUsed(_:)``) longer than the minimum age before that clock. So
///   a command that claimed a blob and commits after the names were read keeps it: the writer
///   refuses a command whose claim is older than ``UploadStore/BlobClaims/lease``, and the
///   minimum age is never shorter than ``UploadStore/BlobClaims/shortestCollectionAge``;
/// - it is still unclaimed once moved aside: a blob is first renamed to a name of its own
///   (``collectedPrefix``), then its modification time is read again. One claimed between the
///   judgement and the rename is put back; a claim after the rename finds no blob, and its
///   caller writes the bytes anew or does without (a mount falls back to an upload).
///
/// A collection stopped by a signal finishes the blob it is removing first
/// (``finishTheBlobOnInterrupt()``). One killed between the rename and the removal leaves the blob
/// under the moved-aside name, and its mark (``collectionMarkPath``): the next collection,
/// `serve`'s start-up, its expiry sweeper and a backup put it back
/// (``restoreAfterAKilledCollection(heldOff:)``), so a blob is never lost to a crash, nor missing
/// for longer than a sweep's interval while the server runs.
/// A backup holds collections off from before its snapshot until it ends (``holdOffCollections()``).
extension BlobStore {
    /// What a collection found and did.
    public struct CollectionReport: Sendable, Equatable {
        /// The blobs removed (or, on a dry run, that would be), in byte order.
        public var removed: [String] = []
        /// Their files' bytes (a backup's hard link keeps its own).
        public var removedBytes: UInt64 = 0
        /// Blobs a layer or logo names that the folder holds (kept).
        public var named = 0
        /// Blobs a layer or logo names that the folder lacks (serve's start-up check names them).
        public var namedButMissing = 0
        /// Blobs no one names, kept because they were used within the minimum age (an upload
        /// completing, a repository deleted a moment ago) or during the collection.
        public var recent = 0
        /// What could not be done, each with why: blobs not removed (a file the collector may not
        /// open or move), moved-aside blobs not put back, folders whose removals may not be durable.
        public var failed: [String] = []
    }

    /// The start of a name a blob is moved aside under while a collection removes it.
    static let collectedPrefix = ".collected-"

    /// The file whose first byte a collection locks, in the data folder itself (a folder whose
    /// store was made by `migrate` alone has no blobs folder yet, and may still be backed up).
    private var collectionLockPath: String { directory + "/.blob-collection-lock" }

    /// Made as a collection moves its first blob aside, removed once it has left nothing moved
    /// aside (as it ends, or is stopped by a signal): while it is there and no collection holds
    /// the lock, one was killed part way, or could not put a blob back.
    var collectionMarkPath: String { directory + "/.blob-collection-running" }

    /// Held while a blob is moved aside and then removed or put back: an interrupt waits for it.
    /// It holds the collection's mark while the collection has left nothing moved aside, for an
    /// interrupt to remove (`nil` when the mark must stay).
    private static let removingOne = Mutex<String?>(nil)

    /// Makes the signals that stop a command (``Interrupts/stopping``) end `garbage-collect` once
    /// the blob it is removing is removed or put back (status 128 + the signal): none is left
    /// moved aside, missing under its name, for a server that runs on. A second signal, or
    /// SIGKILL, ends it at once; what it leaves is put back by
    /// ``restoreAfterAKilledCollection(heldOff:)``.
    public static func finishTheBlobOnInterrupt() {
        Interrupts.onFirst { signalNumber in
            removingOne.withLock { (removableMark: inout String?) -> Void in
                if let removableMark { unlink(removableMark) }
                _exit(128 + signalNumber)
            }
        }
    }

    /// Whether a collection's mark is there: one runs now, or one was killed part way.
    public var killedCollectionLeftItsMark: Bool { FileManager.default.fileExists(atPath: collectionMarkPath) }

    /// Puts back what a collection killed part way left moved aside, when one was (its mark is
    /// there) and none runs now. For a live server's sweeper, which lists no blob folder
    /// otherwise, and a backup, which would lack those blobs.
    /// - Parameter heldOff: the caller holds collections off (a backup), so none runs; otherwise
    ///   the collection's lock is taken for the moment, and nothing is done while a collection or
    ///   a backup has it (a later call does it).
    /// - Returns: what could not be put back, each with why.
    public func restoreAfterAKilledCollection(heldOff: Bool = false) -> [String] {
        guard killedCollectionLeftItsMark else { return [] }
        var taken: FileLock?
        if !heldOff {
            guard let lock = (try? FileLock.lockByte(0, of: collectionLockPath, exclusive: true)) ?? nil else { return [] }
            taken = lock
        }
        defer { taken?.release() }
        let failed = restoreCollected().failed
        if failed.isEmpty { unlink(collectionMarkPath) }
        return failed
    }

    /// Held (shared) by a backup from before its snapshot until it ends: a collection is refused
    /// meanwhile, so no blob the snapshot names goes before it is linked.
    /// - Returns: `nil` while a collection runs: the caller waits, and asks again.
    public func holdOffCollections() throws -> FileLock? {
        try FileLock.lockByte(0, of: collectionLockPath, exclusive: false)
    }

    /// How much later than its store's last event a blob to remove may have been used before the
    /// store is taken to be behind the folder: the store's clock (on PostgreSQL the database's)
    /// and the file system's may differ by this much. Commands claim a blob just before the event
    /// that names it, so a later use is one whose event the store lacks (or a push refused at its
    /// commit, with no event since: `--force` then).
    static let usedAfterTheStore: TimeInterval = 60

    /// Removes the blobs not among those `named` returns that no one used for `minimumAge`
    /// seconds. `named` is called after this collection's clock is read. Unless `force`, a
    /// collection that would remove something with names that look like another store's is
    /// refused before anything is removed: names of no blob, or of blobs half or more of which
    /// the folder lacks; or, given when the store recorded its last event (`storeLastRecorded`),
    /// a blob to remove that was used after it (``usedAfterTheStore``): the store is behind the
    /// folder (an old copy of its database), so what it does not name may be what came since.
    /// - Parameters:
    ///   - judged: called with each blob about to be moved aside (for tests of a claim that comes
    ///     in between).
    ///   - movedAside: called with each blob once it is moved aside, before it is removed (for
    ///     tests of an interrupt then).
    public func collectGarbage(
        minimumAge: TimeInterval, dryRun: Bool, force: Bool = false, storeLastRecorded: Date? = nil, named: () throws -> [String],
        judged: (String) -> Void = { _ in }, movedAside: (String) -> Void = { _ in }
    ) throws -> CollectionReport {
        guard let lock = try FileLock.lockByte(0, of: collectionLockPath, exclusive: true) else {
            throw StoreError(.io, "another collection, or a backup, is using the blobs of \(directory) now: run again once it ends")
        }
        defer { lock.release() }
        var collection = CollectionReport()
        collection.failed = restoreCollected().failed
        // What a killed one left is back: its mark goes (this one's is made before its first rename).
        if collection.failed.isEmpty { unlink(collectionMarkPath) }
        // Never shorter than the writer's fence allows: a blob claimed within it may be named by a commit in flight.
        let cutoff = try Self.fileSystemTime(in: staging).addingTimeInterval(-max(minimumAge, BlobClaims.shortestCollectionAge))
        let names = Set(try named())
        let unnamed = try unnamedBlobs(besides: names, counting: &collection)
        collection.namedButMissing = names.count - collection.named
        var old: [(digest: String, path: String, size: UInt64)] = []
        var lastUse: (digest: String, at: Date)?
        for candidate in unnamed {
            guard let info = Self.openedStatus(candidate.path) else {
                // Gone meanwhile (removed by hand) is nothing; one that cannot be opened is named.
                if FileManager.default.fileExists(atPath: candidate.path) { collection.failed.append("\(candidate.digest): cannot be opened, so its last use cannot be read") }
                continue
            }
            let used = Self.modificationTime(of: info)
            guard used < cutoff else {
                collection.recent += 1
                continue
            }
            old.append(candidate)
            if used > lastUse?.at ?? .distantPast { lastUse = (candidate.digest, used) }
        }
        if !force, !old.isEmpty {
            if names.isEmpty {
                throw StoreError(.io, "the store names no blob, so all \(old.count) unused ones of \(directory) would go: if every repository was deleted, run again with --force")
            }
            if collection.namedButMissing * 2 >= names.count {
                throw StoreError(.io, "\(collection.namedButMissing) of the \(names.count) blobs the store names are not in \(directory): is it this store's folder? (run again with --force if so)")
            }
            if let storeLastRecorded, let lastUse, lastUse.at > storeLastRecorded.addingTimeInterval(Self.usedAfterTheStore) {
                throw StoreError(.io, """
                    \(lastUse.digest), which the store does not name, was used at \(lastUse.at), after the store's last event \
                    (\(storeLastRecorded)): the store is behind this folder (an old copy of its database?), so what it lacks may \
                    be what came since. Give the store that serves this folder (run again with --force if it is this one: a push \
                    refused at its commit, with no event since)
                    """)
            }
        }
        for candidate in old {
            if !dryRun {
                judged(candidate.digest)
                do {
                    guard try removeUnlessClaimed(candidate, since: cutoff, leftNothingBefore: collection.failed.isEmpty, movedAside: movedAside) else {
                        collection.recent += 1
                        continue
                    }
                } catch {
                    collection.failed.append("\(candidate.digest): \(error)")
                    continue
                }
            }
            collection.removed.append(candidate.digest)
            collection.removedBytes += candidate.size
        }
        if !dryRun {
            for algorithm in Set(collection.removed.compactMap(DigestAlgorithm.init(of:))) {
                do { try Self.syncDirectory(directory + "/blobs/" + algorithm.rawValue) } catch {
                    collection.failed.append("the \(algorithm.rawValue) folder's removals may not be durable: \(error)")
                }
            }
            // Kept after a failure, which may have left a blob moved aside.
            Self.removingOne.withLock { $0 = nil }
            if collection.failed.isEmpty { unlink(collectionMarkPath) }
        }
        return collection
    }

    /// Every blob file not in `names`, in byte order of their digests; `collection` counts the named.
    private func unnamedBlobs(besides names: Set<String>, counting collection: inout CollectionReport) throws -> [(digest: String, path: String, size: UInt64)] {
        var unnamed: [(digest: String, path: String, size: UInt64)] = []
        for algorithm in DigestAlgorithm.allCases {
            let folder = directory + "/blobs/" + algorithm.rawValue
            // A folder not there holds no blob (one made before sha512 was taken, removed by hand).
            guard FileManager.default.fileExists(atPath: folder) else { continue }
            for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
                let digest = algorithm.rawValue + ":" + name
                // Copies in progress, moved-aside blobs and anything else are not blobs.
                guard Validation.isRegistryDigest(digest), DigestAlgorithm(of: digest) == algorithm else { continue }
                if names.contains(digest) {
                    collection.named += 1
                    continue
                }
                guard let size = blobSize(digest) else { continue }
                unnamed.append((digest, folder + "/" + name, size))
            }
        }
        return unnamed.sorted { $0.digest.precedesByBytes($1.digest) }
    }

    /// Moves the blob aside and removes it, unless it was claimed since `cutoff` (then it is put
    /// back). - Returns: whether it was removed.
    /// - Parameter leftNothingBefore: no blob this collection judged before is left moved aside
    ///   (nothing failed), so that an interrupt after this one may remove the mark.
    private func removeUnlessClaimed(
        _ blob: (digest: String, path: String, size: UInt64), since cutoff: Date, leftNothingBefore: Bool, movedAside: (String) -> Void
    ) throws -> Bool {
        let mark = collectionMarkPath
        return try Self.removingOne.withLock { removableMark in
            removableMark = nil
            let marking = open(mark, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            guard marking >= 0 else { throw Self.posixError("create \(mark)") }
            close(marking)
            let removed = try removeHoldingTheInterrupt(blob, since: cutoff, movedAside: movedAside)
            if leftNothingBefore { removableMark = mark }  // not reached when it threw: the blob may be aside
            return removed
        }
    }

    private func removeHoldingTheInterrupt(
        _ blob: (digest: String, path: String, size: UInt64), since cutoff: Date, movedAside: (String) -> Void
    ) throws -> Bool {
        let aside = PathNames.folder(of: blob.path) + "/" + Self.collectedPrefix + blob.path.split(separator: "/").last! + "." + RandomUUIDs.next()
        guard rename(blob.path, aside) == 0 else {
            guard errno == ENOENT else { throw Self.posixError("rename \(blob.path)") }
            return false  // gone meanwhile (removed by hand): nothing to remove
        }
        movedAside(blob.digest)
        // The inode moved, so a claim that came before the rename stamped what is read here.
        guard let info = Self.openedStatus(aside), Self.modificationTime(of: info) < cutoff else {
            try putBack(aside, as: blob.path)
            return false
        }
        guard unlink(aside) == 0 || errno == ENOENT else { throw Self.posixError("remove \(aside)") }
        return true
    }

    /// Puts a moved-aside blob back under its name, unless a new copy took it meanwhile (the
    /// same bytes, its own claim kept), then drops the moved-aside name. A link where the folder
    /// has them, a rename where it has not.
    private func putBack(_ aside: String, as path: String) throws {
        if link(aside, path) == 0 || errno == EEXIST || errno == ENOENT {
            unlink(aside)
        } else if [EXDEV, EPERM, ENOTSUP, EMLINK].contains(errno) {
            if !FileManager.default.fileExists(atPath: path), rename(aside, path) != 0, errno != ENOENT { throw Self.posixError("restore \(path)") }
            unlink(aside)  // a new copy came first: this one goes
        } else {
            throw Self.posixError("restore \(path)")
        }
        try Self.syncDirectory(PathNames.folder(of: path))
    }

    /// Puts back every blob a collection moved aside and did not finish with (a crash between its
    /// rename and its removal). Safe beside a collection still running: it only keeps a blob that
    /// collection meant to remove, which the next one removes.
    /// - Returns: the blobs put back, and those that could not be, each with why.
    @discardableResult
    public func restoreCollected() -> (restored: [String], failed: [String]) {
        var result: (restored: [String], failed: [String]) = ([], [])
        for algorithm in DigestAlgorithm.allCases {
            let folder = directory + "/blobs/" + algorithm.rawValue
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(Self.collectedPrefix) {
                let hex = name.dropFirst(Self.collectedPrefix.count).prefix { $0 != "." }
                let digest = algorithm.rawValue + ":" + hex
                guard Validation.isRegistryDigest(digest) else { continue }
                do {
                    try putBack(folder + "/" + name, as: folder + "/" + hex)
                    result.restored.append(digest)
                } catch {
                    result.failed.append("blob \(digest), moved aside by a collection, not put back: \(error)")
                }
            }
        }
        return result
    }

    public func markUsed(_ digests: [String]) throws {
        // ESTALE: on NFS, a name another node's collection removed (as ENOENT, nothing to keep).
        let gone = [ENOENT, ESTALE]
        var marked: [String] = []
        for digest in digests {
            let path = blobPath(digest)
            if utimensat(AT_FDCWD, path, nil, 0) == 0 { marked.append(path) } else if !gone.contains(errno) { throw Self.posixError("mark \(path) used") }
        }
        // Synced before the command that stops naming them commits: a stamp lost with the power
        // would leave them to a collection while a backup taken before still names them. (On a
        // journaling file system the first sync commits every stamp; the rest find them committed.)
        for path in marked {
            let file = open(path, O_RDONLY | O_CLOEXEC)
            guard file >= 0 else {
                if gone.contains(errno) { continue }
                throw Self.posixError("open \(path)")
            }
            defer { close(file) }
            guard fsync(file) == 0 else { throw Self.posixError("sync \(path)") }
        }
    }
}
