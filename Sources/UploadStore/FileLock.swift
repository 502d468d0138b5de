import Foundation

/// A lock on one byte of a file of the data folder (``lockByte(_:of:exclusive:)``): an upload's
/// staging lock, the blob collection's, a store's writers'. Released by ``release()``, once, by the
/// task that took it (hence `@unchecked`), or when its holder dies.
public final class FileLock: @unchecked Sendable {
    private var descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { release() }

    /// Whether it keeps a file open: not where a read-only mount never had the file made (and a
    /// read-only mount's exclusive lock keeps the file open only to have looked, holding nothing).
    public var isHeld: Bool { descriptor >= 0 }

    /// Whether the file this lock is held on is still the one at `path`: a lock taken on a file
    /// that another process removed (or replaced) in the moment between its open and its lock
    /// holds nothing anyone else will look at.
    public func holds(_ path: String) -> Bool {
        var held = stat(), named = stat()
        guard descriptor >= 0, fstat(descriptor, &held) == 0, stat(path, &named) == 0 else { return false }
        return held.st_dev == named.st_dev && held.st_ino == named.st_ino
    }

    /// Gives the lock up (closing the file gives up its locks).
    public func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    /// Locks one byte of the file at `path` (made if missing, owned as its folder is), for this
    /// holder alone (`exclusive`) or shared with other shared holders; `nil`, at once, when
    /// another holder has it. On a read-only mount (a snapshot's, or one of a folder still written
    /// through another mount) a shared lock is taken on the file as it is; an exclusive one, which
    /// needs the file writable, is refused while anyone holds the byte, and else holds nothing;
    /// where the file was never made, nothing ever locked it, and the lock holds nothing.
    /// - Throws: when the folder's filesystem cannot lock (no record locks).
    public static func lockByte(_ offset: off_t, of path: String, exclusive: Bool) throws -> FileLock? {
        var range = flock()
        range.l_type = Int16(exclusive ? F_WRLCK : F_RDLCK)
        range.l_whence = Int16(SEEK_SET)
        range.l_start = offset
        range.l_len = 1
        var descriptor = open(path, O_RDWR | O_CLOEXEC)
        if descriptor < 0, errno == ENOENT { descriptor = create(path) }
        if descriptor < 0, errno == EROFS || (errno == EACCES && !exclusive) {
            // A shared lock needs the file readable only (one an operator's root made, say).
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            if descriptor < 0, errno == ENOENT { return FileLock(descriptor: -1) }
            if descriptor >= 0, exclusive {
                // Read-only: whether anyone holds it is all that can be learned.
                let lock = FileLock(descriptor: descriptor)
                guard try control(descriptor, getOpenFileDescriptionLock, &range, path) else { return nil }
                return range.l_type == Int16(F_UNLCK) ? lock : nil
            }
        }
        guard descriptor >= 0 else { throw StoreError(.io, "open \(path): \(String(cString: strerror(errno)))") }
        let lock = FileLock(descriptor: descriptor)
        return try control(descriptor, setOpenFileDescriptionLock, &range, path) ? lock : nil
    }

    /// Makes the lock file, owned as its folder is: a lock file root made (an operator's `sudo`)
    /// would keep the folder's own user from locking it.
    private static func create(_ path: String) -> Int32 {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0, geteuid() == 0 else { return descriptor }
        var folder = stat()
        if stat(PathNames.folder(of: path), &folder) == 0, folder.st_uid != 0 { _ = fchown(descriptor, folder.st_uid, folder.st_gid) }
        return descriptor
    }

    /// `fcntl` with a lock request, retried when interrupted. - Returns: `false` when another holder's lock conflicts.
    private static func control(_ descriptor: Int32, _ command: Int32, _ range: inout flock, _ path: String) throws -> Bool {
        while true {
            if fcntl(descriptor, command, &range) == 0 { return true }
            let failure = errno
            switch failure {
            case EINTR: continue  // a lock manager's round trip (NFS) interrupted
            case EAGAIN, EACCES: return false
            default:
                throw StoreError(.io, "\(path) \(unsupported): \(String(cString: strerror(failure)))")
            }
        }
    }

    private static let unsupported = "cannot be locked (its folder needs a filesystem with record locks)"

    /// Whether `error` says the file system cannot lock at all, rather than that the file could
    /// not be made or opened.
    public static func isUnsupported(_ error: any Error) -> Bool {
        (error as? StoreError)?.message.contains(unsupported) == true
    }

    /// `F_OFD_GETLK`: which lock, if any, would conflict with the one described (36 on every Linux).
    static let getOpenFileDescriptionLock: Int32 = 36

    /// `F_OFD_SETLK`, which Glibc's Swift module leaves out (it is behind `_GNU_SOURCE`); 37 on
    /// every Linux. An open-file-description lock: the kernel, or a shared filesystem's lock
    /// manager, releases it when its holder closes the file or dies.
    public static let setOpenFileDescriptionLock: Int32 = 37
}
