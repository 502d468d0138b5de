import LMDBKit

extension UploadMigrations {
    /// The tables of completed layers, images and tags per repository. The projections' layout
    /// version changed with them, so the next open rebuilds every table from the log.
    static func createImageTables(_ txn: Transaction) throws {
        for name in ["layers", "images", "image-tags"] {
            _ = try txn.openDatabase(name, create: true)
        }
    }
}
