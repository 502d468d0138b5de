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

    /// Takes the staging lock of `uploadId` when no other holder has it; `nil` when one does. Never waits.
    /// - Throws: when the staging folder's filesystem cannot lock (no record locks): the store will
    ///   not write staging it cannot keep to one writer.
    public func tryLockStaging(_ uploadId: String) throws -> StagingLock? {
        try FileLock.lockByte(Self.lockOffset(uploadId), of: staging + "/.upload-locks", exclusive: true)
    }

    /// Where an upload's byte lies: FNV-1a of its id (the same in every process, unlike `Hasher`),
    /// kept below 2^62 so that a 64-bit `off_t` holds it. The file stays empty: a lock may lie past its end.
    static func lockOffset(_ uploadId: String) -> off_t {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in uploadId.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01b3 }
        return off_t(hash >> 2)
    }
}
