public import LMDBKit
public import PostgresKit

/// Every migration of a PostgreSQL store, in the order they apply; ids are permanent, and the
/// rules are the LMDB ones (``UploadMigrations``): never edit, rename or reorder a shipped one.
/// Each runs in its own transaction with the row that records it, under a session advisory lock
/// (``lockKey``), so nodes starting together apply each exactly once and never see half of one.
public enum PostgresMigrations {
    public static let migrations: [(identifier: String, sql: String)] = [
        ("0001-create-event-log", createEventLog),
        ("0002-create-projections", createProjections),
        ("0003-call-answered-events", markCallAnsweredEvents),
    ]

    /// The id of the newest migration this binary knows.
    public static var latest: String { migrations.last!.identifier }

    /// The migrations that change nothing and only mark the database (``UploadMigrations/markingMigrations``).
    public static let markingMigrations: Set<String> = ["0003-call-answered-events"]

    /// The advisory lock migrations hold (`pg_advisory_lock`): "upld" and 1.
    public static let lockKey: Int64 = 0x7570_6C64_0000_0001

    /// The ids recorded in the database, in the order applied; empty for a database never migrated.
    public static func applied(_ connection: PostgresConnection) throws -> [String] {
        let exists = try connection.query("SELECT to_regclass('upload_coordinator_migrations') IS NOT NULL")
        guard exists.bytes(0, 0) == [1] else { return [] }
        let rows = try connection.query("SELECT identifier FROM upload_coordinator_migrations ORDER BY applied_order")
        return (0..<rows.count).map { rows.text($0, 0) }
    }

    /// What `applied` means to this binary.
    /// - Throws: ``MigrationError/foreignDatabase(_:)`` for another program's database.
    public static func status(_ connection: PostgresConnection) throws -> MigrationStatus {
        var applied = try applied(connection)
        if applied.isEmpty {
            do {
                try refuseForeign(connection)
            } catch MigrationError.foreignDatabase(_) {
                // Or a node migrating a new database between the two looks (its migrations table
                // not there yet, its first tables there now): looked at again once none migrates.
                try connection.query("SELECT pg_advisory_lock($1)", [.int64(lockKey)])
                defer { _ = try? connection.query("SELECT pg_advisory_unlock($1)", [.int64(lockKey)]) }
                applied = try self.applied(connection)
                if applied.isEmpty { try refuseForeign(connection) }
            }
        }
        let known = Set(migrations.map(\.identifier))
        let unknown = applied.filter { !known.contains($0) }
        if !unknown.isEmpty { return .superseded(unknown: unknown) }
        let pending = migrations.map(\.identifier).filter { !applied.contains($0) }
        return pending.isEmpty ? .current : .pending(pending)
    }

    /// Refuses a database that holds tables (or views), other than an extension's (PostGIS's,
    /// pg_stat_statements', which a template may give every new database), but no
    /// upload-coordinator migration: another
    /// program's, named by a mistyped `--database-url`, which migrating would fill with this
    /// store's tables (or fail part way in, on a table of the same name). The LMDB store refuses
    /// another program's environment alike.
    static func refuseForeign(_ connection: PostgresConnection) throws {
        let rows = try connection.query("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname <> 'upload_coordinator_migrations'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY c.relname LIMIT 6
            """)
        guard rows.count > 0 else { return }
        let names = (0..<rows.count).map { rows.text($0, 0) }
        throw MigrationError.foreignDatabase(names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", …" : ""))
    }

    /// Applies every pending migration, under the advisory lock. - Returns: the ids it applied.
    /// - Throws: ``MigrationError/superseded(_:)`` when a newer binary has migrated the database.
    @discardableResult
    public static func migrate(_ connection: PostgresConnection) throws -> [String] {
        try connection.query("SELECT pg_advisory_lock($1)", [.int64(lockKey)])
        defer { _ = try? connection.query("SELECT pg_advisory_unlock($1)", [.int64(lockKey)]) }
        if try applied(connection).isEmpty { try refuseForeign(connection) }  // before anything is made in it
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS upload_coordinator_migrations (
                identifier text PRIMARY KEY,
                applied_order integer NOT NULL UNIQUE,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        switch try status(connection) {
        case .current: return []
        case .superseded(let unknown): throw MigrationError.superseded(unknown)
        case .pending(let pending):
            for (order, migration) in migrations.enumerated() where pending.contains(migration.identifier) {
                try connection.transaction {
                    try connection.execute(migration.sql)
                    try connection.query(
                        "INSERT INTO upload_coordinator_migrations (identifier, applied_order) VALUES ($1, $2)",
                        [.text(migration.identifier), .int32(Int32(order + 1))])
                }
            }
            return pending
        }
    }
}
