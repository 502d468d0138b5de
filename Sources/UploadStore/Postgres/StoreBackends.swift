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
        // A store copy-store moved to PostgreSQL (``MovedToPostgreSQL``) is the one the variable names: no warning.
        let folder = URL(fileURLWithPath: dataDirectory)
        guard flag == nil, let url = urlInTheEnvironment, FileManager.default.fileExists(atPath: folder.appendingPathComponent("data.mdb").path),
              !FileManager.default.fileExists(atPath: folder.appendingPathComponent(MovedToPostgreSQL.fileName).path) else { return }
        let warning = "warning: \(databaseURLVariable) names a database (\(shown(url))), so it is used, not the LMDB store in \(dataDirectory); unset it to use the folder's store\n"
        StandardStreams.error(warning)
    }

    /// A database URL as reports and logs show it: every secret masked.
    public static func shown(_ url: String) -> String { PostgresConnection.withoutPassword(url) }

    /// Opens the store: in PostgreSQL when `databaseURL` is given (`poolSize` connections for
    /// readers), else in LMDB in `configuration.directory`, unless that store was moved to
    /// PostgreSQL (``MovedToPostgreSQL``, which `Store` checks under its writers' lock).
    public static func open(_ configuration: StoreConfiguration, databaseURL: String?, poolSize: Int = 8) throws -> any EventStore {
        guard let databaseURL else { return try Store(configuration) }
        return try PostgresStore(url: databaseURL, configuration: configuration, poolSize: poolSize)
    }

    /// A folder whose LMDB store `copy-store` copied into PostgreSQL keeps its `data.mdb` (its
    /// blobs and staging are the database's now): a node started on it without the database URL
    /// (its environment variable missing) would serve the old log beside the new one, and its
    /// start-up would cut staging back to that log, losing parts the database records. So the copy
    /// leaves this note in the folder, and the folder's LMDB store is opened to write only once it
    /// is removed. (Reading it, to audit the old copy, stays open.)
    public enum MovedToPostgreSQL {
        public static let fileName = "moved-to-postgresql"

        /// Leaves the note: where the store went (its URL without secrets) and when.
        public static func leave(in directory: String, databaseURL: String, at time: Date = Date()) throws {
            let note = "This folder's LMDB store was copied to PostgreSQL at \(shown(databaseURL)) on \(ISO8601DateFormatter().string(from: time)).\n"
                + "Serve it with --database-url (or \(databaseURLVariable)); to serve this LMDB copy instead, remove this file.\n"
            let path = URL(fileURLWithPath: directory).appendingPathComponent(fileName).path
            // 0600, as every file of the data folder: it names the database (without its password).
            // Synced, with its name: a note lost to a power cut would let a node serve the old log.
            let file = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard file >= 0 else { throw StoreError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
            let bytes = Array(note.utf8)
            let written = write(file, bytes, bytes.count) == bytes.count && fsync(file) == 0
            close(file)
            let folder = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            let named = folder >= 0 && fsync(folder) == 0
            if folder >= 0 { close(folder) }
            guard written, named else { throw StoreError(.io, "cannot write \(path) durably: \(String(cString: strerror(errno)))") }
        }

        /// Why the LMDB store in `directory` may not be opened to write, or `nil`.
        public static func refusal(directory: String) -> StoreError? {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(fileName).path
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            return StoreError(.io, "the LMDB store in \(directory) was moved to PostgreSQL by copy-store (\(path) says where): serve it with --database-url, or remove that file to serve this old copy")
        }
    }

    /// Opens the store for reading only: never migrating it, rebuilding its projections, counting
    /// as its writer or waiting for its write lock, so it is safe on a store others serve, and
    /// with credentials that may only read. What the audit commands, `events` and `copy-store`'s
    /// source use.
    public static func openForReading(
        directory: String, databaseURL: String?, unreadableProjections unreadable: UnreadableProjections = .refuse
    ) throws -> any SnapshotReading {
        guard let databaseURL else {
            if MovedToPostgreSQL.refusal(directory: directory) != nil {
                // Read, to audit the old copy; but an auditor meaning the live store would record an old root.
                let warning = "warning: the LMDB store in \(directory) was moved to PostgreSQL (\(directory)/\(MovedToPostgreSQL.fileName) says where): this is that store as it was then; give --database-url for the store served now\n"
                StandardStreams.error(warning)
            }
            return try ReadOnlyStore(directory: directory, unreadableProjections: unreadable)
        }
        return try PostgresReader(url: databaseURL, unreadableProjections: unreadable)
    }

}
