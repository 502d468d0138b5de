import Foundation
import PostgresKit

/// Which backend a deployment's store lives in: LMDB in the data directory (the default), or the
/// PostgreSQL database `--database-url` names. Every executable opens stores through here.
public enum StoreBackends {
    /// The environment variable that stands for `--database-url`.
    public static let databaseURLVariable = "UPLOAD_COORDINATOR_DATABASE_URL"

    /// The database URL from the flag, else the environment variable; `nil` for LMDB.
    /// - Throws: ``StoreError`` `.io` naming the problem when the URL is not a PostgreSQL one.
    public static func databaseURL(flag: String?) throws -> String? {
        guard let url = flag ?? urlInTheEnvironment else { return nil }
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw StoreError(.io, "the database URL must be postgres://USER[:PASS]@HOST:PORT/DB; got '\(PostgresConnection.withoutPassword(url))'")
        }
        return url
    }

    private static var urlInTheEnvironment: String? {
        ProcessInfo.processInfo.environment[databaseURLVariable].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Warns, on standard error, a tool named a folder that holds an LMDB store while the database
    /// URL comes only from the environment: the database is what the tool then reads (as after a
    /// move with `copy-store`, whose folder keeps its old `data.mdb`), which its operator should know.
    public static func warnWhenTheEnvironmentOverrides(flag: String?, dataDirectory: String) {
        guard flag == nil, let url = urlInTheEnvironment,
              FileManager.default.fileExists(atPath: URL(fileURLWithPath: dataDirectory).appendingPathComponent("data.mdb").path) else { return }
        let warning = "warning: \(databaseURLVariable) names a database (\(shown(url))), so it is used, not the LMDB store in \(dataDirectory); unset it to use the folder's store\n"
        FileHandle.standardError.write(Data(warning.utf8))
    }

    /// A database URL as reports and logs show it: every secret masked.
    public static func shown(_ url: String) -> String { PostgresConnection.withoutPassword(url) }

    /// Opens the store: in PostgreSQL when `databaseURL` is given (`poolSize` connections for
    /// readers), else in LMDB in `configuration.directory`.
    public static func open(_ configuration: StoreConfiguration, databaseURL: String?, poolSize: Int = 8) throws -> any EventStore {
        guard let databaseURL else { return try Store(configuration) }
        return try PostgresStore(url: databaseURL, configuration: configuration, poolSize: poolSize)
    }

    /// Opens the store for reading only: never migrating it, rebuilding its projections, counting
    /// as its writer or waiting for its write lock, so it is safe on a store others serve, and
    /// with credentials that may only read. What the audit commands, `events` and `copy-store`'s
    /// source use.
    public static func openForReading(
        directory: String, databaseURL: String?, unreadableProjections unreadable: UnreadableProjections = .refuse
    ) throws -> any SnapshotReading {
        guard let databaseURL else { return try ReadOnlyStore(directory: directory, unreadableProjections: unreadable) }
        return try PostgresReader(url: databaseURL, unreadableProjections: unreadable)
    }

    /// The migrations recorded in the store, read without migrating; empty when there is none yet.
    public static func appliedMigrations(directory: String, databaseURL: String?) throws -> [String] {
        guard let databaseURL else { return try Store.appliedMigrations(directory: directory) }
        return try PostgresStore.appliedMigrations(url: databaseURL)
    }
}
