import Foundation

/// A lock on one byte of a file of the data folder (``lockByte(_:of:exclusive:)``): an upload's
/// staging lock, the blob collection's, a store's writers'. Released by ``release()``, once, by the
/// task that took it (hence `@unchecked`), or when its holder dies.
public final class FileLock: @unchecked Sendable {
    private var descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { release() }

    /// Gives the lock up (closing the file gives up its locks).
    public func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    /// Locks one byte of the file at `path` (made if missing), for this holder alone (`exclusive`)
    /// or shared with other shared holders; `nil`, at once, when another holder has it. On a
    /// read-only file system (a snapshot's mount) no holder can change what a lock there guards,
    /// so the lock holds nothing and is taken.
    /// - Throws: when the folder's filesystem cannot lock (no record locks).
    public static func lockByte(_ offset: off_t, of path: String, exclusive: Bool) throws -> FileLock? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EROFS { return FileLock(descriptor: -1) }
            throw StoreError(.io, "open \(path): \(String(cString: strerror(errno)))")
        }
        let lock = FileLock(descriptor: descriptor)
        var range = flock()
        range.l_type = Int16(exclusive ? F_WRLCK : F_RDLCK)
        range.l_whence = Int16(SEEK_SET)
        range.l_start = offset
        range.l_len = 1
        while true {
            if fcntl(descriptor, setOpenFileDescriptionLock, &range) == 0 { return lock }
            let failure = errno
            switch failure {
            case EINTR: continue  // a lock manager's round trip (NFS) interrupted
            case EAGAIN, EACCES: return nil
            default:
                throw StoreError(.io, "\(path) cannot be locked (its folder needs a filesystem with record locks): \(String(cString: strerror(failure)))")
            }
        }
    }

    /// `F_OFD_SETLK`, which Glibc's Swift module leaves out (it is behind `_GNU_SOURCE`); 37 on
    /// every Linux. An open-file-description lock: the kernel, or a shared filesystem's lock
    /// manager, releases it when its holder closes the file or dies.
    public static let setOpenFileDescriptionLock: Int32 = 37
}
