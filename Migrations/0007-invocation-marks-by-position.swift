import LMDBKit

extension UploadMigrations {
    /// Retries are found through marks keyed by log position (`invocation-marks`), appended at the
    /// tree's right edge, instead of the `invocations` index keyed by the SDK's random invocation
    /// ids, whose every insert rewrote a random leaf. The projection layout changed with it
    /// (version 6), so the next open fills the new table from the log.
    static func markInvocationsByPosition(_ txn: Transaction) throws {
        _ = try txn.openDatabase("invocation-marks", create: true)
        try txn.dropDatabase("invocations")
    }
}
