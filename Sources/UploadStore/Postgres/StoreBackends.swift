import Foundation
import PostgresKit

/// Which backend a deployment's store lives in: LMDB in the data directory (the default), or the
/// PostgreSQL database `--database-url` names. Every executable opens stores through here.
public enum StoreBackends {
    /// The environment variable that stands for `--database-url`.
    public static let databaseURLVariable = "UPLOAD_COORDINATOR_DATABASE_URL"

    /// The database URL from the flag, else the environment variable; `nil` for LMDB.
    /// - Parameter dataDirectory: the folder a tool was named, when a store in it is what the tool
    ///   reads: a URL only in the environment beside a folder that holds an LMDB store is refused
    ///   as ambiguous, so that checking the folder never checks (and passes) the database instead.
    /// - Throws: ``StoreError`` `.io` naming the problem when the URL is not a PostgreSQL one.
    public static func databaseURL(flag: String?, dataDirectory: String? = nil) throws -> String? {
        let environment = ProcessInfo.processInfo.environment[databaseURLVariable].flatMap { $0.isEmpty ? nil : $0 }
        if flag == nil, environment != nil, let folder = dataDirectory,
           FileManager.default.fileExists(atPath: URL(fileURLWithPath: folder).appendingPathComponent("data.mdb").path) {
            throw StoreError(.io, "\(databaseURLVariable) names a database, and \(folder) holds an LMDB store: give --database-url to use the database, or unset the variable to use the folder's store")
        }
        guard let url = flag ?? environment else { return nil }
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw StoreError(.io, "the database URL must be postgres://USER[:PASS]@HOST:PORT/DB; got '\(PostgresConnection.withoutPassword(url))'")
        }
        return url
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
