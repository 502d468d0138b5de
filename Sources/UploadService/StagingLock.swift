import Foundation
import UploadStore

extension BlobStore {
    /// One upload's lock on its staging file, shared by every process and node that uses the
    /// staging folder: two `serve` processes on one LMDB folder, or PostgreSQL nodes on a shared
    /// filesystem. Without it, two requests for one part sent to two nodes would write one staging
    /// file at one offset at once, and the bytes left there need not be the ones the log records.
    ///
    /// It is a Linux open-file-description lock on one byte of `staging/.upload-locks`, at an
    /// offset hashed from the upload id. The kernel, or the shared filesystem's lock manager,
    /// releases it when its holder closes it or dies, so a crash never leaves an upload locked.
    /// Two upload ids that hash alike only wait for each other.
    public typealias StagingLock = FileLock

    /// A lock on one byte of a file of the data folder (``lockByte(_:of:exclusive:)``):
    /// an upload's staging lock, or the blob collection's. Released by ``release()``, once, by the
    /// task that took it (hence `@unchecked`), or when its holder dies.
    public final class FileLock: @unchecked Sendable {
        private var descriptor: Int32

        fileprivate init(descriptor: Int32) { self.descriptor = descriptor }

        deinit { release() }

        /// Gives the lock up (closing the file gives up its locks).
        public func release() {
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }
    }

    /// Takes the staging lock of `uploadId` when no other holder has it; `nil` when one does. Never waits.
    /// - Throws: when the staging folder's filesystem cannot lock (no record locks): the store will
    ///   not write staging it cannot keep to one writer.
    public func tryLockStaging(_ uploadId: String) throws -> StagingLock? {
        try Self.lockByte(Self.lockOffset(uploadId), of: staging + "/.upload-locks", exclusive: true)
    }

    /// Locks one byte of the file at `path` (made if missing), for this holder alone (`exclusive`)
    /// or shared with other shared holders; `nil`, at once, when another holder has it.
    /// - Throws: when the folder's filesystem cannot lock (no record locks).
    static func lockByte(_ offset: off_t, of path: String, exclusive: Bool) throws -> FileLock? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Self.posixError("open \(path)") }
        let lock = FileLock(descriptor: descriptor)
        var range = flock()
        range.l_type = Int16(exclusive ? F_WRLCK : F_RDLCK)
        range.l_whence = Int16(SEEK_SET)
        range.l_start = offset
        range.l_len = 1
        while true {
            if fcntl(descriptor, BlobStore.setOpenFileDescriptionLock, &range) == 0 { return lock }
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

    /// Where an upload's byte lies: FNV-1a of its id (the same in every process, unlike `Hasher`),
    /// kept below 2^62 so that a 64-bit `off_t` holds it. The file stays empty: a lock may lie past its end.
    static func lockOffset(_ uploadId: String) -> off_t {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in uploadId.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01b3 }
        return off_t(hash >> 2)
    }
}
