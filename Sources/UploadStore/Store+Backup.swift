import Foundation
import LMDBKit
import UploadCore

extension Store {
    /// Copies the store's two LMDB environments into `directory` (which must exist and hold
    /// neither), compacted, while the writer goes on: the projections first, then the log, each
    /// from one read snapshot of its own. The projections' checkpoint can then never be past the
    /// copied log's tail (they commit right behind it), so the copy opens as a store whose
    /// projections catch up from the log, as after any restart. Both files are synced.
    ///
    /// The copy counts no unsynced projection writer: its projections came whole from one
    /// committed snapshot, so opening it after a reboot need not rebuild them.
    /// - Returns: the tail of the copied log.
    public func copyEnvironments(to directory: String) throws -> UInt64 {
        let projectionsCopy = ProjectionEnvironment.directory(of: directory)
        try FileManager.default.createDirectory(atPath: projectionsCopy, withIntermediateDirectories: false)
        try projections.environment.copy(to: projectionsCopy, compacting: true)
        try environment.copy(to: directory, compacting: true)
        let copy = try Environment(directory: directory, configuration: .init())
        return try copy.write { txn in
            let schema = try Schema(txn)
            try UnsyncedProjectionWriters.forgetAll(txn, schema)
            return try EventLog.tail(txn, schema)?.position ?? 0
        }
    }

    /// The digests of every blob the store's projections name: each repository's completed layers
    /// and its logo, in byte order, without repeats. What a backup copies beside the log.
    public func referencedBlobDigests() throws -> [String] {
        var digests = Set<String>()
        var after: StoreCursor?
        while true {
            let page = try read { try $0.layers(after: after, limit: 1024) }
            for entry in page { digests.insert(entry.layer.layerDigest) }
            guard page.count == 1024, let last = page.last else { break }
            after = last.cursor
        }
        var key: [UInt8]?
        while true {
            let page = try snapshot { try $0.entries(.repositoryDetails, afterKey: key, limit: 1024) }
            for entry in page {
                if let logo = try RepositoryDetails(decoding: entry.value).logoImageDigest { digests.insert(logo) }
            }
            guard page.count == 1024, let last = page.last else { break }
            key = last.key
        }
        return digests.sorted { $0.precedesByBytes($1) }
    }
}
