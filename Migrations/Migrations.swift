public import LMDBKit

/// Every migration of the store, in the order they apply. Ids are permanent.
///
/// Rules (the "Migrations" article of UploadStore's documentation): never edit, rename or reorder a
/// shipped migration; add a new one. Migrations see only LMDBKit, LogHashing and PostgresKit, and
/// speak in database names and bytes, never in domain types,
/// because they describe the store as it was when they shipped. The event log itself is never
/// rewritten by a migration.
public enum UploadMigrations {
    public static let migrator: StoreMigrator = {
        var migrator = StoreMigrator()
        migrator.registerMigration("0001-create-event-log", createEventLog)
        migrator.registerMigration("0002-create-projections", createProjections)
        migrator.registerMigration("0003-create-image-tables", createImageTables)
        migrator.registerMigration("0004-create-merkle-tree", createMerkleTree)
        migrator.registerMigration("0005-create-audit-indexes", createAuditIndexes)
        migrator.registerMigration("0006-mark-request-digests", markRequestDigests)
        migrator.registerMigration("0007-invocation-marks-by-position", markInvocationsByPosition)
        migrator.registerMigration("0008-indexes-that-append", indexesThatAppend)
        migrator.registerMigration("0009-merkle-tree-at-the-right-edge", merkleTreeAtTheRightEdge)
        migrator.registerMigration("0010-projections-in-their-own-environment", projectionsInTheirOwnEnvironment)
        migrator.registerMigration("0011-create-signed-checkpoints", createSignedCheckpoints)
        migrator.registerMigration("0012-call-answered-events", markCallAnsweredEvents)
        return migrator
    }()

    /// The id of the newest migration this binary knows.
    public static var latest: String { migrator.identifiers.last! }

    /// The migrations that write nothing and only mark the store, for the binaries before them to
    /// refuse: a store still without them holds nothing they mark, and may be read as it is.
    public static let markingMigrations: Set<String> = ["0012-call-answered-events"]
}
