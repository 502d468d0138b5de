import LMDBKit

extension UploadMigrations {
    /// The repository-scoped indexes (`repository-uploads`, keyed by repository then upload id, and
    /// `repository-initiations`, by repository then time) took each insert inside the tree, one
    /// leaf per repository in every commit. Active uploads are now keyed by upload id alone
    /// (`active-uploads`) and initiations by time alone (`initiations`), each entry naming its
    /// repository, so inserts land at the right edge. The projection layout changed with them
    /// (version 7), so the next open rebuilds the tables from the log.
    static func indexesThatAppend(_ txn: Transaction) throws {
        _ = try txn.openDatabase("active-uploads", create: true)
        try txn.dropDatabase("repository-uploads")
        try txn.dropDatabase("repository-initiations")
    }
}
