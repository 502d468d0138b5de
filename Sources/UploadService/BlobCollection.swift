import Foundation
import UploadCore
import UploadStore

/// Removing the blobs no repository names: those of deleted repositories, and those a push left
/// when its commit was refused (its repository deleted meanwhile). `upload-coordinator
/// garbage-collect` runs it, while `serve` runs too, on every node's shared folder.
///
/// A blob is removed only when all of these hold:
/// - no layer or logo names it, in projections read at the log's tail
///   (``UploadStore/SnapshotReading/referencedBlobDigests(patience:)``), read *before* the files are judged;
/// - it was last claimed (``claimBlob(_:)``: every command that will name a blob claims it first,
///   and keeping one claims it) longer than the minimum age before the collection began. So a
///   command that claimed a blob and commits after the names were read keeps it, as long as its
///   claim and its commit are less than the minimum age apart (seconds, against an hour);
/// - it is still unclaimed once moved aside: a blob is first renamed to a name of its own
///   (``collectedPrefix``), then its modification time is read again. One claimed between the
///   judgement and the rename is put back; a claim after the rename finds no blob, and its
///   caller writes the bytes anew or does without (a mount falls back to an upload).
///
/// A collection killed between the rename and the removal leaves the blob under the moved-aside
/// name; the next collection, and `serve`'s start-up, put it back: a blob is never lost to a crash.
extension BlobStore {
    /// What a collection found and did.
    public struct Collection: Sendable, Equatable {
        /// The blobs removed (or, on a dry run, that would be), in byte order.
        public var removed: [String] = []
        public var removedBytes: UInt64 = 0
        /// Blobs a layer or logo names.
        public var named = 0
        /// Blobs no one names, kept because they were claimed within the minimum age (an upload
        /// completing, a push refused a moment ago) or during the collection.
        public var recent = 0
    }

    /// The start of a name a blob is moved aside under while a collection removes it.
    static let collectedPrefix = ".collected-"

    /// Removes the blobs not in `named` that no one claimed for `minimumAge` seconds. `named` must
    /// be read from the store after this collection's clock was read, which is why the caller
    /// passes a closure.
    public func collectGarbage(minimumAge: TimeInterval, dryRun: Bool, named: () throws -> [String]) throws -> Collection {
        try collectGarbage(minimumAge: minimumAge, dryRun: dryRun, named: named, judged: { _ in })
    }

    /// - Parameter judged: called with each blob about to be moved aside (for tests of a claim that
    ///   comes in between).
    func collectGarbage(minimumAge: TimeInterval, dryRun: Bool, named: () throws -> [String], judged: (String) -> Void) throws -> Collection {
        restoreCollected()
        let cutoff = Self.fileSystemNow(in: directory + "/blobs").addingTimeInterval(-minimumAge)
        let names = Set(try named().map { $0.lowercased() })  // as the files are named
        var collection = Collection()
        for candidate in try unnamedBlobs(besides: names, counting: &collection) {
            guard let modified = Self.modificationTime(candidate.path), modified < cutoff else {
                collection.recent += 1
                continue
            }
            if !dryRun {
                judged(candidate.digest)
                guard try removeUnlessClaimed(candidate, since: cutoff) else {
                    collection.recent += 1
                    continue
                }
            }
            collection.removed.append(candidate.digest)
            collection.removedBytes += candidate.size
        }
        if !dryRun, !collection.removed.isEmpty {
            for algorithm in DigestAlgorithm.allCases { try Self.syncDirectory(directory + "/blobs/" + algorithm.rawValue) }
        }
        return collection
    }

    /// Every blob file not in `names`, in byte order of their digests; `collection` counts the named.
    private func unnamedBlobs(besides names: Set<String>, counting collection: inout Collection) throws -> [(digest: String, path: String, size: UInt64)] {
        var unnamed: [(digest: String, path: String, size: UInt64)] = []
        for algorithm in DigestAlgorithm.allCases {
            let folder = directory + "/blobs/" + algorithm.rawValue
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
    private func removeUnlessClaimed(_ blob: (digest: String, path: String, size: UInt64), since cutoff: Date) throws -> Bool {
        let aside = PathNames.folder(of: blob.path) + "/" + Self.collectedPrefix + blob.path.split(separator: "/").last! + "." + UUID().uuidString.lowercased()
        guard rename(blob.path, aside) == 0 else {
            guard errno == ENOENT else { throw Self.posixError("rename \(blob.path)") }
            return false  // removed by another collection meanwhile
        }
        // The inode moved, so a claim that came before the rename stamped what is read here.
        guard let modified = Self.modificationTime(aside), modified < cutoff else {
            try putBack(aside, as: blob.path)
            return false
        }
        guard unlink(aside) == 0 || errno == ENOENT else { throw Self.posixError("remove \(aside)") }
        return true
    }

    /// Puts a moved-aside blob back under its name, unless a new copy took it meanwhile (the
    /// same bytes), then drops the moved-aside name.
    private func putBack(_ aside: String, as path: String) throws {
        guard link(aside, path) == 0 || errno == EEXIST || errno == ENOENT else { throw Self.posixError("restore \(path)") }
        unlink(aside)
        try Self.syncDirectory(PathNames.folder(of: path))
    }

    /// Puts back every blob a collection moved aside and did not finish with (a crash between its
    /// rename and its removal). Safe beside a collection still running: it only keeps a blob that
    /// collection meant to remove, which the next one removes. - Returns: the blobs put back.
    @discardableResult
    public func restoreCollected() -> [String] {
        var restored: [String] = []
        for algorithm in DigestAlgorithm.allCases {
            let folder = directory + "/blobs/" + algorithm.rawValue
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(Self.collectedPrefix) {
                let hex = name.dropFirst(Self.collectedPrefix.count).prefix { $0 != "." }
                guard Validation.isRegistryDigest(algorithm.rawValue + ":" + hex) else { continue }
                if (try? putBack(folder + "/" + name, as: folder + "/" + hex)) != nil { restored.append(algorithm.rawValue + ":" + hex) }
            }
        }
        return restored
    }

    static func modificationTime(_ path: String) -> Date? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1_000_000_000)
    }
}
