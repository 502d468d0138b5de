import LMDBKit

extension UploadMigrations {
    /// The audit indexes (initiations by time, overall and per repository) and the invocation
    /// index that answers SDK retries. The projection layout changed with them, so the next open
    /// rebuilds every table from the log.
    static func createAuditIndexes(_ txn: Transaction) throws {
        for name in ["initiations", "repository-initiations", "invocations"] {
            _ = try txn.openDatabase(name, create: true)
        }
    }
}
