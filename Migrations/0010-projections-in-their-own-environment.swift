import LMDBKit

extension UploadMigrations {
    /// The projections move out of the log's environment into one of their own (`projections/`),
    /// whose commits are not synced: the log's synced commit then carries the log and its Merkle
    /// tree alone. The tables here are dropped, not copied: the next open rebuilds them from the
    /// log in the new environment. `projection-writers` records who writes that environment
    /// unsynced, so that a crash of the machine is known to call for a rebuild.
    static func projectionsInTheirOwnEnvironment(_ txn: Transaction) throws {
        _ = try txn.openDatabase("projection-writers", create: true)
        for name in [
            "sessions", "repositories", "active-uploads", "layers", "images", "image-tags", "initiations",
            "invocation-marks", "projection-state",
        ] {
            try txn.dropDatabase(name)
        }
    }
}
