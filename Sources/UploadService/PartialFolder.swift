import Foundation
import Synchronization
import UploadStore

/// A folder built beside its destination (`.NAME.partial-<uuid>`, private from the start) and
/// renamed into place only once whole, so that a crash part way leaves nothing that looks finished.
/// `backup` and `copy-store` build their stores in one.
///
/// Its builder holds a lock on `.NAME.partial-<uuid>.lock` beside it, taken before the folder is
/// made and given up once it is published or discarded; the kernel gives it up when the builder
/// dies. So a folder whose lock is free was left by a builder that was killed (or by a version
/// before the lock), and the next build for the same destination removes it
/// (``abandonedRemoved``): a killed backup's copy of a whole store does not stay hidden on the disk.
public struct PartialFolder: Sendable {
    public let path: String
    public let destination: String
    /// What was left by builds for the same destination whose builders died, removed as this
    /// one began.
    public let abandonedRemoved: [String]
    private let parent: String
    /// Held while this one is built: `nil` where the file system cannot lock (nothing is then
    /// removed for it, or by it).
    private let claim: FileLock?

    /// Makes the folder. The destination must be new or an empty folder (``StoreBackup/refusal(destination:dataDirectory:)``).
    public init(beside destination: String) throws {
        parent = PathNames.folder(of: destination)
        self.destination = destination
        let prefix = "." + (destination as NSString).lastPathComponent + ".partial-"
        (path, claim) = try Self.claimed(parent + "/" + prefix)
        let made = path
        Self.building.withLock { _ = $0.insert(made) }  // before the folder is: an interrupt from now on removes it
        guard mkdir(path, 0o700) == 0 else {
            let failure = BlobStore.posixError("create \(path), where \(destination) is built")
            Self.building.withLock { _ = $0.remove(made) }
            Self.release(claim, path)
            throw failure
        }
        abandonedRemoved = claim == nil ? [] : Self.removeAbandoned(in: parent, prefix: prefix, except: path)
    }

    /// Syncs the folders directly inside it and the folder itself (their files are synced as they
    /// are written), renames it to its destination (replacing an empty folder there) and syncs
    /// the parent: once this returns, the whole copy is durable. The rename and the interrupt's
    /// removal (``removeOnInterrupt()``) exclude each other: once one begins, the other does not
    /// (an interrupt after the rename ends the process once the copy is whole and durable).
    public func publish() throws {
        let inside = try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
        for folder in inside.filter(Self.isFolder) + [path] { try BlobStore.syncDirectory(folder) }
        let (folder, target, parent, claim) = (path, destination, parent, claim)
        let synced = try Self.building.withLock { folders throws(StoreError) in
            guard rename(folder, target) == 0 else { throw BlobStore.posixError("rename \(folder) to \(target)") }
            folders.remove(folder)
            defer { Self.release(claim, folder) }
            return Result { try BlobStore.syncDirectory(parent) }
        }
        try synced.get()
    }

    /// Removes what was built (a failed or abandoned copy).
    public func discard() {
        let folder = path
        try? FileManager.default.removeItem(atPath: path)
        Self.building.withLock { _ = $0.remove(folder) }  // once gone: an interrupt until then removes it
        Self.release(claim, path)
    }

    /// The folders this process is building: what an interrupt removes (``removeOnInterrupt()``).
    private static let building = Mutex<Set<String>>([])

    /// Makes the signals that stop a command (``Interrupts/stopping``: SIGINT, SIGTERM, SIGHUP)
    /// remove the folders this process is building before it ends (status 128 + the signal), as
    /// a failure would: a backup stopped with Ctrl-C, or by a closed ssh session, leaves no hidden
    /// copy of the store on the disk. (A SIGKILLed one's is removed by the next build:
    /// ``abandonedRemoved``.) For the one-shot commands that build one.
    ///
    /// The copy goes on in other threads meanwhile. The handler holds the lock on ``building``
    /// until the process ends, so none of them publishes a folder, or ends the process on a
    /// failure of its own (each goes through ``publish()`` or ``discard()``), while it works; and
    /// it renames each folder out of their way first (still a partial folder's name, which the
    /// next build sweeps if this one is cut short), so that nothing they write by path lands in
    /// what it removes.
    public static func removeOnInterrupt() {
        Interrupts.onFirst { signalNumber in
            building.withLock { folders in
                var placeholders: [String] = []
                for path in folders.sorted() {
                    let (existed, removed, heldByPlaceholder) = takeAway(path)
                    if heldByPlaceholder { placeholders.append(path) }
                    unlink(lockPath(path))  // its lock goes with the process in any case
                    guard existed else { continue }  // claimed, not made yet, or already removed
                    StandardStreams.error(removed ? "interrupted: removed \(path), the unfinished copy\n"
                        : "interrupted: \(path), the unfinished copy, is left for the next build to the same place to remove\n")
                }
                for placeholder in placeholders { unlink(placeholder) }
                // A thread that found the folder gone before a placeholder came, and was held off
                // the core until it went, makes it again (with its parents): looked at for 200 ms.
                for _ in 0..<(placeholders.isEmpty ? 0 : 20) {
                    usleep(10_000)
                    for path in placeholders where access(path, F_OK) == 0 {
                        _ = takeAway(path)
                        unlink(path)
                    }
                }
                _exit(128 + signalNumber)
            }
        }
    }

    /// Renames the folder at `path` out of the copy's way and puts a file at its name until the
    /// process ends, so that no thread makes the folder again meanwhile; then removes what it
    /// renamed. A thread may make the folder again (opening the copy's store, or its blob folders,
    /// creates them with their parents) between a rename and the file: that one is renamed away in
    /// another round, at once, so that each round's window is a rename and an open, not a removal.
    /// - Returns: whether there was a folder, whether all of it was removed (and nothing is left at
    ///   its name), and whether the file holds its name (to be removed before the process ends).
    static func takeAway(_ path: String) -> (existed: Bool, removed: Bool, heldByPlaceholder: Bool) {
        var renamed: [String] = [], held = false, stuck = false
        for round in 0..<64 {
            let removing = path + "-interrupted" + (round == 0 ? "" : "-\(round)")
            if rename(path, removing) == 0 {
                renamed.append(removing)
            } else if errno != ENOENT {
                stuck = true
                break
            }
            let placeholder = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
            if placeholder >= 0 {
                close(placeholder)
                held = true
                break
            }
            guard errno == EEXIST else { break }
        }
        var removed = held && !stuck
        for folder in renamed where !removeRetrying(folder) { removed = false }
        return (!renamed.isEmpty || stuck, removed, held)
    }

    /// Removes `folder`, looking again a few times: a thread that looked its path up before it was
    /// renamed may still make a folder in it while it is removed (ENOTEMPTY).
    private static func removeRetrying(_ folder: String) -> Bool {
        for _ in 0..<4 {
            if (try? FileManager.default.removeItem(atPath: folder)) != nil || !FileManager.default.fileExists(atPath: folder) { return true }
            usleep(1_000)
        }
        return false
    }

    private static func lockPath(_ folder: String) -> String { folder + ".lock" }

    /// A new folder name starting `prefix`, and the lock on its lock file, taken before the folder
    /// is made. A sweep by another build may find the lock file between its creation and its
    /// lock, and take the lock or remove the file: the name is then given up for another, so
    /// that no folder is ever made whose lock its builder does not hold at its place.
    /// - Returns: no lock where the file system cannot lock.
    private static func claimed(_ prefix: String) throws -> (String, FileLock?) {
        for _ in 0..<8 {
            let path = prefix + RandomUUIDs.next()
            let lock: FileLock?
            do { lock = try FileLock.lockByte(0, of: lockPath(path), exclusive: true) } catch where FileLock.isUnsupported(error) {
                unlink(lockPath(path))  // made, then found unlockable: nothing will remove it later
                return (path, nil)
            }
            if let lock, lock.holds(lockPath(path)) || !lock.isHeld { return (path, lock.isHeld ? lock : nil) }
            lock?.release()
        }
        throw StoreError(.io, "no partial folder could be claimed beside \(prefix): another build takes each one's lock")
    }

    /// Removes the lock file while still holding it, so that no one finds it free and its folder
    /// still there.
    private static func release(_ claim: FileLock?, _ folder: String) {
        guard let claim else { return }
        unlink(lockPath(folder))
        claim.release()
    }

    /// Removes the folders (and lone lock files) named `prefix…` in `parent` whose lock no one
    /// holds. - Returns: the folders removed.
    private static func removeAbandoned(in parent: String, prefix: String, except own: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(prefix) }
        let folders = Set(names.map { $0.hasSuffix(".lock") ? String($0.dropLast(5)) : $0 }).map { parent + "/" + $0 }
        var removed: [String] = []
        for folder in folders.sorted() where folder != own {
            guard let abandoned = (try? FileLock.lockByte(0, of: lockPath(folder), exclusive: true)) ?? nil else { continue }
            // Held on the file at its place (not one removed meanwhile), and free: its builder died.
            guard abandoned.holds(lockPath(folder)) else {
                abandoned.release()
                continue
            }
            if isFolder(folder), (try? FileManager.default.removeItem(atPath: folder)) != nil { removed.append(folder) }
            release(abandoned, folder)
        }
        return removed
    }

    private static func isFolder(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
