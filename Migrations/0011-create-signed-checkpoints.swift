import LMDBKit

extension UploadMigrations {
    /// The checkpoints the log signs (C2SP tlog-checkpoint notes), keyed by their tree size in
    /// eight big-endian bytes, kept so that verify can check every one against the tree.
    static func createSignedCheckpoints(_ txn: Transaction) throws {
        _ = try txn.openDatabase("signed-checkpoints", create: true)
    }
}
