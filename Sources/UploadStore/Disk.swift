import Foundation
import LMDBKit

/// The file system that holds a folder, as `statvfs` reports it: what layer bytes may take
/// (``BlobStore``'s reserve), what `/metrics` and `stats` show, and what a failed write reports.
public enum Disk {
    /// The bytes free (to unprivileged users) and in all on a file system.
    public typealias Bytes = (free: UInt64, total: UInt64)

    /// The bytes free and in all on the file system that holds `folder`; `nil` when it cannot be
    /// asked. A file system that reports more than 64 bits' worth (some network and FUSE ones) is
    /// taken at the largest value, never trapped on.
    public static func bytes(of folder: String) -> Bytes? {
        var disk = statvfs()
        guard statvfs(folder, &disk) == 0 else { return nil }
        func bytes(_ blocks: UInt64) -> UInt64 {
            let product = blocks.multipliedReportingOverflow(by: UInt64(disk.f_frsize))
            return product.overflow ? .max : product.partialValue
        }
        return (bytes(UInt64(disk.f_bavail)), bytes(UInt64(disk.f_blocks)))
    }

    /// `error`, or when it is LMDB's report of a disk that filled as it wrote its pages (an I/O
    /// error, `EIO`, as the kernel reports a failed write-back, or `ENOSPC`), the same with how
    /// full the disk of `folder` is, so that an operator reading "Input/output error" looks there
    /// first. (The folder is not named: the message may be a client's answer.)
    /// - Parameter opening: the write was the open's own (a migration, the views brought up to the
    ///   log), which no caller asked for.
    public static func explaining(_ error: any Error, writingIn folder: String, opening: Bool = false) -> any Error {
        guard let failure = error as? LMDBError, failure.code == .ioError || failure.code == .noSpace else { return error }
        guard let disk = bytes(of: folder) else { return error }
        let what = opening
            ? "the store could not be opened: opening writes (migrations, the views brought up to the log), and the write failed, keeping nothing"
            : "the write failed and nothing of it was kept"
        return StoreError(.io, "\(what): \(failure); the data folder's disk has \(disk.free) of \(disk.total) bytes free", isForCallers: true)
    }
}
