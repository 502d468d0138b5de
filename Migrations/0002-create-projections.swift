import LMDBKit

extension UploadMigrations {
    /// The projection tables and their checkpoint. They start empty with checkpoint 0, so a store
    /// that already holds events gets its projections built from the log on its next open.
    static func createProjections(_ txn: Transaction) throws {
        for name in ["sessions", "repositories", "repository-uploads"] {
            _ = try txn.openDatabase(name, create: true)
        }
        let state = try txn.openDatabase("projection-state", create: true)!
        try txn.put(state, Array("checkpoint".utf8), [UInt8](repeating: 0, count: 8))
    }
}
