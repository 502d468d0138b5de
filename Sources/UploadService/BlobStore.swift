import Crypto
import Foundation
import LogHashing
import UploadCore
import UploadStore

/// Layer bytes on disk, beside the LMDB environment and never in the log:
/// - `staging/<uploadId>`: the parts of an upload in progress, written at their offsets;
/// - `blobs/<algorithm>/<hex>`: completed layers, content-addressed and immutable (`sha256`; a
///   registry client may also name `sha512`).
///
/// The write path's ordering is what makes a crash safe: bytes are synced before the event that
/// records them commits, and files the log no longer needs are removed only after it commits.
/// ``reconcile(with:)`` repairs whatever a crash left between those two steps.
public struct BlobStore: BlobStorage {
    public let directory: String
    /// Free disk space that layer bytes never take: the log, on the same disk by default, still
    /// needs room to grow when pushers have filled the rest. 0 checks nothing. (``ensureRoom(for:)``)
    public var reservedDiskBytes: UInt64 = 0
    /// The most bytes one upload may stage: a registry client's chunks have no other bound, and
    /// the AWS API's parts would allow 1,000 of 20 MiB. (``LayerTooLarge``)
    public var maximumLayerBytes: UInt64 = BlobStore.standardMaximumLayerBytes
    /// ECR Public's quota on a layer's size: 10,000 MiB.
    public static let standardMaximumLayerBytes: UInt64 = 10_000 << 20
    /// The free bytes of the file system holding a folder (`nil` when it cannot be read): the
    /// disk's own figure, unless a test stands in for the disk.
    public var freeDiskBytes: @Sendable (String) -> UInt64? = BlobStore.freeBytes(of:)
    var staging: String { directory + "/staging" }
    /// The sha256 blobs, where hashed copies also wait to be committed (`.tmp-*`, on the same file
    /// system as every blob directory).
    private var blobs: String { directory + "/blobs/sha256" }

    /// The folder's layout, creating nothing (for readers of another process's folder).
    public init(existing directory: String) { self.directory = directory }

    public init(directory: String) throws {
        self = BlobStore(existing: directory)
        // A new data folder is private: its blobs include private repositories' layers.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for dir in [directory + "/staging"] + DigestAlgorithm.allCases.map({ directory + "/blobs/" + $0.rawValue }) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        // The new folders' names, before the log names anything in them.
        for dir in [directory, directory + "/blobs"] { try Self.syncDirectory(dir) }
    }

    public func stagingPath(_ uploadId: String) -> String { staging + "/" + uploadId }

    /// The uploads with a staging file whose lock another holder has now, here or in another
    /// process or node: a chunk is streaming into each. One look at the folder and a lock request
    /// per file, no read of the store (a chunk stages its bytes from the first).
    func uploadsBeingWritten() throws -> Set<String> {
        var busy = Set<String>()
        for name in try FileManager.default.contentsOfDirectory(atPath: staging) where !name.hasPrefix(".") && !name.hasSuffix(".unshared") {
            if let held = try tryLockStaging(name) { held.release() } else { busy.insert(name) }
        }
        return busy
    }

    /// Refuses (`LimitExceededException`; the registry's `TOOMANYREQUESTS`) to write `bytes` more
    /// layer bytes when that would leave less free space than ``reservedDiskBytes``. Writers check
    /// before each mebibyte, so concurrent ones may take a little of the reserve, never all of it.
    public func ensureRoom(for bytes: UInt64) throws {
        guard reservedDiskBytes > 0 else { return }
        guard let free = freeDiskBytes(directory) else { throw Self.posixError("statvfs \(directory)") }
        guard free >= reservedDiskBytes, free - reservedDiskBytes >= bytes else {
            throw CommandError(.limitExceeded, "The server's disk is nearly full; no more layer bytes are taken until space is freed")
        }
    }

    @Sendable public static func freeBytes(of folder: String) -> UInt64? { Disk.bytes(of: folder)?.free }

    /// The file of a blob, for an `<algorithm>:<hex>` digest.
    public func blobPath(_ digest: String) -> String {
        let algorithm = digest.prefix { $0 != ":" }
        return directory + "/blobs/" + algorithm + "/" + digest.dropFirst(algorithm.count + 1)
    }

    /// The size of a blob on disk, or `nil` when the store does not hold it.
    public func blobSize(_ digest: String) -> UInt64? {
        var info = stat()
        guard stat(blobPath(digest), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(info.st_size)
    }

    /// Claims by stamping the file's modification time now (the file system's clock, as
    /// ``fileSystemTime(in:)`` reads it): what a collection judges a blob's last use by.
    public func claimBlob(_ digest: String) throws -> UInt64? {
        let path = blobPath(digest)
        guard utimensat(AT_FDCWD, path, nil, 0) == 0 else {
            switch errno {
            // ESTALE: on NFS, a name another node's collection removed. EPERM, EACCES: a file this
            // process may not stamp (another user's, put there by hand), which a collection could
            // not tell in use: not kept, so the caller writes the blob anew in its place.
            case ENOENT, ESTALE, EPERM, EACCES: return nil
            default: throw Self.posixError("claim \(path)")
            }
        }
        // Gone again when a collection moved it aside between the stamp and this open (it puts it
        // back, having seen the stamp): not kept here, so the caller writes it anew.
        // Opened, not stat'ed: on NFS a stat may answer from the cache for a name removed meanwhile.
        guard let info = Self.openedStatus(path), info.st_mode & S_IFMT == S_IFREG else { return nil }
        try Self.syncDirectory(PathNames.folder(of: path))
        return UInt64(info.st_size)
    }

    /// The status of the file at `path`, read from it opened (on NFS, an open revalidates what
    /// another node changed, where a stat may answer from the cache); `nil` when it cannot be opened.
    static func openedStatus(_ path: String) -> stat? {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return nil }
        defer { close(file) }
        var info = stat()
        return fstat(file, &info) == 0 ? info : nil
    }

    /// Writes a part at its offset a chunk at a time, hashing it as it goes, cuts off anything
    /// after it (bytes of a part that never committed), and syncs the file, and the directory when
    /// the file is new. Fails without truncating when the bytes turn out malformed part way; the
    /// caller cuts the staging back to what the log records.
    /// - Returns: `sha256:<hex>` of the part.
    @discardableResult
    public func writePart(uploadId: String, offset: UInt64, bytes: some PartBytes) throws -> String {
        let writer = stagingWriter(uploadId: uploadId, offset: offset)
        defer { writer.abandon() }
        try bytes.forEachChunk { try writer.write($0) }
        guard writer.length == bytes.byteCount, bytes.byteCount > 0 else {
            throw StoreError(.io, "the part held \(writer.length) bytes where \(bytes.byteCount) were announced")
        }
        return try writer.finish().digest
    }

    /// `sha256:<hex>` of a part's bytes, read a chunk at a time (a part that will not be staged).
    public static func digest(of bytes: some PartBytes) throws -> String {
        var hasher = SHA256()
        try bytes.forEachChunk { hasher.update(bufferPointer: $0) }
        return "sha256:" + Hex.encode(hasher.finalize())
    }

    /// Hashes the first `length` staged bytes of an upload and copies them, in the same pass,
    /// to a temporary file in the blob directory, not synced: a copy whose digest is not the one
    /// named is discarded without costing the disk a sync. An empty upload (a registry client's
    /// empty blob) has no staging file.
    /// - Returns: the digest, and the temporary file to ``syncFile(_:)`` and ``commitBlob(_:digest:)``,
    ///   or to ``discard(temporary:)``.
    public func hashAndCopyStaged(uploadId: String, length: UInt64, algorithm: DigestAlgorithm = .sha256) throws -> (digest: String, temporary: String) {
        switch algorithm {
        case .sha256: try hashAndCopyStaged(uploadId: uploadId, length: length, hasher: SHA256(), algorithm)
        case .sha512: try hashAndCopyStaged(uploadId: uploadId, length: length, hasher: SHA512(), algorithm)
        }
    }

    private func hashAndCopyStaged(
        uploadId: String, length: UInt64, hasher: some HashFunction, _ algorithm: DigestAlgorithm
    ) throws -> (digest: String, temporary: String) {
        var hasher = hasher
        let source = stagingPath(uploadId)
        let input = length == 0 ? nil : FileHandle(forReadingAtPath: source)
        guard input != nil || length == 0 else {
            throw StoreError(.io, "the staged bytes of upload \(uploadId) are missing")
        }
        defer { try? input?.close() }
        try ensureRoom(for: length)
        let temporary = completionCopyPath(uploadId)
        guard Self.createPrivateFile(temporary), let output = FileHandle(forWritingAtPath: temporary) else {
            let failure = Self.posixError("create \(temporary)")
            unlink(temporary)
            throw failure
        }
        defer { try? output.close() }
        do {
            var remaining = length
            while remaining > 0, let input {
                // Checked again before each mebibyte, as streamed writers do: copies that passed the
                // check above together would otherwise fill the reserve between them.
                if remaining < length { try ensureRoom(for: min(remaining, 1 << 20)) }
                let chunk = try input.read(upToCount: Int(min(remaining, 1 << 20))) ?? Data()
                guard !chunk.isEmpty else { throw StoreError(.io, "upload \(uploadId) has fewer staged bytes than its \(length)") }
                hasher.update(data: chunk)
                try output.write(contentsOf: chunk)
                remaining -= UInt64(chunk.count)
            }
        } catch {
            // The caller learns no temporary to discard: a partial copy (a layer's bytes) goes now.
            unlink(temporary)
            throw error
        }
        return (algorithm.rawValue + ":" + Hex.encode(hasher.finalize()), temporary)
    }

    /// Writes `bytes` (a blob small enough to hold, such as a repository's logo) to a synced
    /// temporary file in the blob directory, for ``commitBlob(_:digest:)``.
    public func writeTemporary(_ bytes: [UInt8]) throws -> String {
        // Foundation's `UUID()` reads /dev/urandom through a descriptor, and out of descriptors
        // gave the same all-zero id to every caller: two logos' bytes then met in one file.
        let temporary = blobs + "/.tmp-" + RandomUUIDs.next()
        guard Self.createPrivateFile(temporary, exclusive: true) else { throw Self.posixError("create \(temporary)") }
        guard let output = FileHandle(forWritingAtPath: temporary) else {
            let failure = Self.posixError("open \(temporary)")
            unlink(temporary)
            throw failure
        }
        defer { try? output.close() }
        do {
            try output.write(contentsOf: bytes)
            try output.synchronize()
        } catch {
            discard(temporary: temporary)
            throw error
        }
        return temporary
    }

    /// Moves a hashed temporary file to its content address (keeping an existing blob, which holds
    /// the same bytes) and syncs the directory. Either way the blob is claimed now: a new one is
    /// stamped before it takes its name, not left with its copy's last write (a layer's copy and its
    /// sync may take longer than the writer's fence, ``UploadStore/BlobClaims``).
    public func commitBlob(_ temporary: String, digest: String) throws {
        if try claimBlob(digest) != nil { return discard(temporary: temporary) }
        let destination = blobPath(digest)
        // Stamped before it takes its name, so that no collection ever sees it named with an old time.
        guard utimensat(AT_FDCWD, temporary, nil, 0) == 0 else { throw Self.posixError("claim \(temporary)") }
        guard rename(temporary, destination) == 0 else { throw Self.posixError("rename \(temporary)") }
        try Self.syncDirectory(PathNames.folder(of: destination))
    }

    /// Gives a staging file that is also a blob (``linkStaged(uploadId:digest:)``, whose upload's
    /// completion has not committed: it was refused, or the process died first) an inode of its
    /// own, holding its first `length` bytes, before anything writes to it: a blob never changes.
    /// Does nothing to a file with one name, or none. Keeping nothing removes the name: copying
    /// nothing needs no room, so a full disk cannot stop it.
    func unshareStaging(_ path: String, keeping length: UInt64) throws {
        // Opened, not merely stat'ed: another node's link changed what a stat may answer from the cache.
        guard let info = Self.openedStatus(path), info.st_nlink > 1 else { return }
        guard length > 0 else {
            guard unlink(path) == 0 || errno == ENOENT else { throw Self.posixError("unshare \(path)") }
            return try Self.syncDirectory(staging)
        }
        let copy = path + ".unshared"
        unlink(copy)
        try ensureRoom(for: length)
        do {
            try Self.copyFile(path, length: length, to: copy)
            guard rename(copy, path) == 0 else { throw Self.posixError("unshare \(path)") }
        } catch {
            unlink(copy)  // a partial copy would hold its space until the next tidy, on a disk likely full
            throw error
        }
        try Self.syncDirectory(staging)
    }

    /// Copies the first `length` bytes of `source` (all of it when `nil`) to a new file, synced,
    /// with `mode`, or the source's permissions when `nil`.
    static func copyFile(_ source: String, length: UInt64?, to destination: String, mode: mode_t? = nil) throws {
        var info = stat()
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw posixError("open \(source)") }
        defer { close(input) }
        guard fstat(input, &info) == 0 else { throw posixError("stat \(source)") }
        try copyFile(from: input, named: source, length: length ?? UInt64(info.st_size), to: destination, mode: mode ?? info.st_mode & 0o777)
    }

    /// Copies the first `length` bytes read from `input` (the file `name`) to a new file, synced.
    static func copyFile(from input: Int32, named name: String, length: UInt64, to destination: String, mode: mode_t) throws {
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard output >= 0 else { throw posixError("create \(destination)") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var copied: UInt64 = 0
        while copied < length {
            let n = buffer.withUnsafeMutableBytes { pread(input, $0.baseAddress, Int(min(UInt64($0.count), length - copied)), off_t(copied)) }
            guard n > 0 else { throw StoreError(.io, "\(name) holds \(copied) bytes, not \(length)") }
            var written = 0
            while written < n {  // a short write (a full disk) is continued, so its errno is the one reported
                let w = buffer.withUnsafeBytes { pwrite(output, $0.baseAddress! + written, n - written, off_t(copied) + off_t(written)) }
                guard w > 0 else { throw posixError("write \(destination)") }
                written += w
            }
            copied += UInt64(n)
        }
        guard fsync(output) == 0 else { throw posixError("fsync \(destination)") }
    }

    /// Makes an upload's staging file, which holds exactly the layer `digest` names (`size`
    /// bytes), the blob of that digest too (a hard link: no byte is copied), keeping an existing
    /// blob, and syncs the blob directory. The staging name stays until the completion commits
    /// (``removeStaging(_:)``), so a crash before then leaves the upload as the log records it.
    /// - Returns: `false`, having done nothing, when the file does not hold exactly `size` bytes or
    ///   cannot be linked (the blob store on another file system, or one without hard links): the
    ///   caller copies it instead (``hashAndCopyStaged(uploadId:length:algorithm:)``).
    public func linkStaged(uploadId: String, digest: String, size: UInt64) throws -> Bool {
        try adoptStaged(stagingPath(uploadId), digest: digest, size: size)
    }

    public func adoptStaged(_ source: String, digest: String, size: UInt64) throws -> Bool {
        let destination = blobPath(digest)
        // Opened, not stat'ed: another node's write changed a size a stat may answer from the cache.
        guard let info = Self.openedStatus(source), UInt64(info.st_size) == size else { return false }
        if link(source, destination) != 0 {
            switch errno {
            case EEXIST: break
            // ENOENT: the upload ended meanwhile (its staging goes without its lock); the caller
            // goes the ordinary way, which finds it so.
            case EXDEV, EPERM, ENOTSUP, EMLINK, ENOENT: return false
            default: throw Self.posixError("link \(destination)")
            }
        }
        // Claimed whether linked now or kept before: the staging's inode may be older than a
        // collection's cutoff. Removed meanwhile by one that judged it first: the caller copies.
        return try claimBlob(digest) != nil
    }

    public func discard(temporary: String) { unlink(temporary) }

    /// Makes an empty file only its owner may read (0600, whatever the umask), as every file of the
    /// data folder is: blobs include private repositories' layers. `exclusive`: only where no file
    /// has the name (a temporary's name is its own), else it is emptied.
    static func createPrivateFile(_ path: String, exclusive: Bool = false) -> Bool {
        guard exclusive else { return FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0 else {
            unlink(path)
            return false
        }
        return true
    }

    public func openBlob(_ digest: String) throws -> any BlobReader { try BlobFile(path: blobPath(digest)) }

    /// Removes an upload's staged bytes, once the log no longer needs them, and the copy of them a
    /// completion was making (``hashAndCopyStaged(uploadId:length:algorithm:)``): one a crash left
    /// would otherwise wait for a start-up an hour later, a layer's bytes under no name the log
    /// gives. A completion still making it fails, and is answered as the ended upload's.
    public func removeStaging(_ uploadId: String) {
        unlink(stagingPath(uploadId))
        unlink(completionCopyPath(uploadId))
    }

    /// The start of the staging name a monolithic push's bytes wait under until their digest is
    /// checked and their upload started (``UploadService/pushWholeLayer``): a name no upload has,
    /// and one that staging's reconciliation passes over (it starts with a dot) until it finds it
    /// an hour old.
    public static let wholeLayerPrefix = ".whole-"

    /// Makes the bytes waiting under `waiting` (``wholeLayerPrefix``) the staging of `uploadId`,
    /// an upload just started. Its name is not synced: the caller syncs it, or makes it a blob.
    public func becomeStaging(_ waiting: String, of uploadId: String) throws {
        guard rename(stagingPath(waiting), stagingPath(uploadId)) == 0 else { throw Self.posixError("rename \(stagingPath(waiting))") }
    }

    /// Where a completion copies an upload's staged bytes, hashing them, before the copy becomes its blob.
    func completionCopyPath(_ uploadId: String) -> String { blobs + "/.tmp-" + uploadId }

    /// Cuts an upload's staged bytes back to `length` (what the log records), after a part whose
    /// bytes were staged was refused. Best effort: start-up reconciliation does the same.
    public func truncateStaging(_ uploadId: String, to length: UInt64) {
        let path = stagingPath(uploadId)
        var info = stat()
        guard stat(path, &info) == 0, UInt64(info.st_size) > length, (try? unshareStaging(path, keeping: length)) != nil else { return }
        _ = truncate(path, off_t(length))
    }

    /// Syncs the file at `path` (a copy ``hashAndCopyStaged(uploadId:length:algorithm:)`` made,
    /// once its digest is the one named).
    public static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("fsync \(path)") }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("fsync \(path)") }
    }

    /// Whether the file changed within the hour before `now`: another node may still be writing it.
    static func isRecent(_ path: String, now: Date) -> Bool {
        guard let modified = try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date else { return false }
        return now.timeIntervalSince(modified) < 3600
    }

    /// How the probes of ``fileSystemNow(in:)`` are named, before their own part.
    static let clockProbePrefix = ".clock-probe-"

    /// The time of the folder's file system: the modification time of a probe file just written.
    /// A write is stamped as every node's writes are (on NFS by the server, whose clock `fstat`
    /// reads back after flushing it), so a node whose own clock is off judges no other node's file
    /// by it. This node's clock when the probe cannot be written. The probe's name is its own (a
    /// node's may not remove another's while it is open), and it is removed once closed.
    static func fileSystemNow(in folder: String) -> Date { (try? fileSystemTime(in: folder)) ?? Date() }

    /// The time of the folder's file system, as ``fileSystemNow(in:)`` reads it, or why it cannot
    /// be read: for the blob collector, which must not judge another node's claims by this node's clock.
    static func fileSystemTime(in folder: String) throws -> Date {
        let probe = folder + "/" + clockProbePrefix + RandomUUIDs.next()
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw posixError("the file system's clock: create \(probe)") }
        defer {
            close(fd)
            unlink(probe)
        }
        // A byte written is stamped by the file system (a preload that fakes this process's clock,
        // as the tests' does, also fakes what `futimens` stamps).
        var info = stat(), byte: UInt8 = 0
        guard pwrite(fd, &byte, 1, 0) == 1, fstat(fd, &info) == 0 else { throw posixError("the file system's clock: write \(probe)") }
        return modificationTime(of: info)
    }

    static func modificationTime(of info: stat) -> Date {
        Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1_000_000_000)
    }

    static func posixError(_ operation: String) -> StoreError {
        let code = errno
        return StoreError(.io, "\(operation): \(String(cString: strerror(code)))", passing: StoreError.passing(errno: code))
    }
}

extension BlobStore {
    /// What ``reconcile(with:)`` found and did.
    public struct Reconciliation: Sendable, Equatable {
        /// Staging files of uploads the log has ended (or never began): removed.
        public var removedStaging: [String] = []
        /// Staging files longer than the bytes the log records: cut back.
        public var truncatedStaging: [String] = []
        /// Bytes or blobs the log records that are not on disk. Should always be empty.
        public var missing: [String] = []
        /// Staging files that could not be put right now (a full disk, an I/O error), which the
        /// next tidy tries again, and blobs a killed collection moved aside that could not be put
        /// back, which the next collection or start-up tries again; each with why.
        public var failed: [String] = []
    }

    /// A file of the folder that only a store with events puts there: an upload's staging or a
    /// blob (temporary and hidden names aside); `nil` when it holds none.
    public func firstKeptFile() -> String? {
        for folder in [staging] + DigestAlgorithm.allCases.map({ directory + "/blobs/" + $0.rawValue }) {
            if let name = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.first(where: { !$0.hasPrefix(".") }) {
                return folder + "/" + name
            }
        }
        return nil
    }

    /// Why the folder `directory` is not the folder of the store `databaseURL` names (LMDB's in the
    /// folder when `nil`), settled before anything is opened or made: the folder's staging and
    /// blobs are what its store's events name, and a wrong store would cut the one's staging
    /// (start-up), take its blobs (a collection), or be made among them. Refused: a database URL
    /// over a folder whose LMDB store holds events and was not moved (`copy-store`'s note); no
    /// database URL over a folder that holds staging or blobs but no LMDB store (a PostgreSQL
    /// deployment's). `nil` when neither.
    public static func storeRefusal(folder directory: String, databaseURL: String?) -> String? {
        let hasLMDBStore = FileManager.default.fileExists(atPath: directory + "/data.mdb")
        guard let databaseURL else {
            guard !hasLMDBStore, let kept = BlobStore(existing: directory).firstKeptFile() else { return nil }
            return """
                \(directory) holds staging or blobs (\(kept)) but no LMDB store: it is a PostgreSQL deployment's folder? Give its \
                database with --database-url or \(StoreBackends.databaseURLVariable)
                """
        }
        guard hasLMDBStore, StoreBackends.MovedToPostgreSQL.refusal(directory: directory) == nil else { return nil }
        // An LMDB store with no events (one made by mistake, without the URL) names nothing here.
        if let reader = try? ReadOnlyStore(directory: directory, unreadableProjections: .readAsEmpty),
           (try? reader.read({ try $0.lastPosition() })) == 0 { return nil }
        return """
            \(directory) holds an LMDB store, whose blobs and staging these are, but a database is named (\(StoreBackends.shown(databaseURL)), \
            by --database-url or \(StoreBackends.databaseURLVariable)) whose store names none of them: unset it to use the folder's \
            store, or move that store into the database with copy-store first
            """
    }

    /// Makes the staging files agree with the log after a crash: staged bytes the log does not
    /// record are discarded, and bytes the log records but the disk lacks are reported. Reads only
    /// the active uploads (through the active-uploads index), so it costs nothing at start-up
    /// however long the history; ``missingBlobs(in:stopped:)`` checks the completed layers.
    ///
    /// Each staging file is judged under its upload's ``StagingLock``, against the log as it is
    /// then, and one whose lock another process or node holds is left alone: its holder is staging
    /// a part now, and leaves the file as the log records it.
    ///
    /// A blob copy in progress (`.tmp-*`) is removed only when no process can still be making it
    /// (an hour old): another process or node may share the folder.
    ///
    /// - Parameter tidyingOnly: staging only, for a live server's periodic tidying: no listing of
    ///   the blob folder (millions of names) for copies a crash left, which start-up removes, and no
    ///   report of what is missing, which start-up makes.
    public func reconcile(with store: any EventStore, tidyingOnly: Bool = false) throws -> Reconciliation {
        var result = Reconciliation()
        if !tidyingOnly { result.failed += restoreCollected().failed }  // a blob collection killed part way
        let now = Self.fileSystemNow(in: staging)
        for name in tidyingOnly ? [] : (try FileManager.default.contentsOfDirectory(atPath: blobs)).sorted() where name.hasPrefix(".tmp-") {
            let path = blobs + "/" + name
            if Self.isRecent(path, now: now) { continue }
            unlink(path)
        }
        let stagingNames = try FileManager.default.contentsOfDirectory(atPath: staging).sorted()
        // A probe left by a process killed between writing and removing it (``fileSystemNow(in:)``),
        // and a monolithic push's bytes left waiting for their upload (``wholeLayerPrefix``).
        for name in stagingNames where (name.hasPrefix(Self.clockProbePrefix) || name.hasPrefix(Self.wholeLayerPrefix))
            && !Self.isRecent(staging + "/" + name, now: now) {
            unlink(staging + "/" + name)
        }
        for name in stagingNames where !name.hasPrefix(".") {
            // `<uploadId>.unshared` is made under its upload's lock (unshareStaging).
            let uploadId = name.hasSuffix(".unshared") ? String(name.dropLast(".unshared".count)) : name
            guard let held = try tryLockStaging(uploadId) else { continue }
            defer { held.release() }
            let path = staging + "/" + name
            // Views that miss an answered write would have an answered part's bytes cut: refused.
            let session = try store.readAnswering { try $0.session(uploadId) }
            guard name == uploadId, let session, session.state == .active else {
                unlink(path)
                // An upload that ended (or never was) has no completion under way either: a copy
                // one left goes too (its maker held this lock), as ``removeStaging(_:)`` takes it.
                if session?.state != .active { unlink(completionCopyPath(uploadId)) }
                result.removedStaging.append(name)
                continue
            }
            // A cancel, expiry or deleted repository removes staging without the lock: gone meanwhile is fine.
            var info = stat()
            guard stat(path, &info) == 0 else { continue }
            let size = UInt64(info.st_size)
            // A live tidy leaves a file written within the hour, and so does a start-up on a store
            // whose commits may land late: a part whose commit's answer was lost (by this node
            // before it restarted, or by another) may still commit after this read.
            if size > session.bytesReceived, !((tidyingOnly || store.commitsMayLandLate) && Self.isRecent(path, now: now)) {
                do {
                    try unshareStaging(path, keeping: session.bytesReceived)
                    guard truncate(path, off_t(session.bytesReceived)) == 0 || errno == ENOENT else { throw Self.posixError("truncate \(path)") }
                    result.truncatedStaging.append(name)
                } catch {
                    result.failed.append("upload \(name): \(error)")
                }
            } else if size < session.bytesReceived {
                result.missing.append("upload \(name): \(session.bytesReceived) bytes recorded, \(size) staged")
            }
        }
        guard !tidyingOnly else { return result }
        let sessions = try store.readAnswering { reader in try reader.allActiveUploads().compactMap { try reader.session($0) } }
        let unstaged = sessions.filter { $0.state == .active && $0.bytesReceived > 0 && !FileManager.default.fileExists(atPath: stagingPath($0.uploadId)) }
        // Read again after the files were looked for: another process or node that completed (or
        // cancelled) one of them meanwhile removed its staging after its commit, which this read
        // sees. Only those still active lack their bytes.
        let stillActive = try store.readAnswering { reader in try unstaged.compactMap { try reader.session($0.uploadId) } }
        for session in stillActive where session.state == .active && session.bytesReceived > 0 {
            result.missing.append("upload \(session.uploadId): \(session.bytesReceived) bytes recorded, none staged")
        }
        return result
    }
}
