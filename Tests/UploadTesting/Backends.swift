import Foundation
import PostgresKit
import UploadCore
import UploadStore

/// The store backends every conformance test runs against.
public enum StoreBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case lmdb, postgres
    public var description: String { rawValue }
}

/// The PostgreSQL server the tests use: `UPLOAD_COORDINATOR_TEST_DATABASE_URL`, which `Tools/test`
/// sets after starting one (`Tools/postgres`). Tests of the PostgreSQL backend fail without it:
/// a backend left untested must not look like a backend that passed.
public func testDatabaseServerURL() throws -> String {
    guard let url = ProcessInfo.processInfo.environment["UPLOAD_COORDINATOR_TEST_DATABASE_URL"], !url.isEmpty else {
        throw StoreError(.io, "UPLOAD_COORDINATOR_TEST_DATABASE_URL is not set: start a server with Tools/postgres, or run Tools/test")
    }
    return url
}

/// A new, empty database on the test server, dropped by ``remove()``.
public struct TemporaryDatabase: Sendable {
    public let url: String
    private let serverURL: String
    private let name: String

    /// - Parameter template: a database to copy (no one may be connected to it), else an empty one.
    public init(copying template: TemporaryDatabase? = nil) throws {
        serverURL = try testDatabaseServerURL()
        name = "uc_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        try PostgresConnection(url: serverURL).execute("CREATE DATABASE \(name)" + (template.map { " TEMPLATE \($0.name)" } ?? ""))
        guard let slash = serverURL.lastIndex(of: "/") else { throw StoreError(.io, "the test database URL names no database") }
        url = serverURL[..<slash] + "/" + name
    }

    /// Exchanges the databases behind this name and `other`'s, as a failover puts another server
    /// behind one address: every connection to either is ended, and the next ones reach the other.
    public func exchange(with other: TemporaryDatabase) throws {
        let admin = try PostgresConnection(url: serverURL)
        let parked = name + "_x"
        for database in [name, other.name] { try admin.execute("ALTER DATABASE \(database) WITH ALLOW_CONNECTIONS false") }
        for (from, to) in [(name, parked), (other.name, name), (parked, other.name)] {
            // Ended sessions take a moment to go; a rename waits up to 5 s for them.
            _ = try admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ('\(name)', '\(other.name)', '\(parked)')")
            try admin.execute("ALTER DATABASE \(from) RENAME TO \(to)")
        }
        for database in [name, other.name] { try admin.execute("ALTER DATABASE \(database) WITH ALLOW_CONNECTIONS true") }
    }

    public func remove() {
        _ = try? PostgresConnection(url: serverURL).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}

/// Where one test's store lives, on either backend: a data directory, and for PostgreSQL a
/// database of its own. Open as many stores on it as the test needs (the nodes of a deployment).
public struct TestStoreLocation: Sendable {
    public let backend: StoreBackend
    public let directory: TemporaryDirectory
    public let database: TemporaryDatabase?

    public init(_ backend: StoreBackend) throws {
        self.backend = backend
        directory = TemporaryDirectory()
        database = backend == .postgres ? try TemporaryDatabase() : nil
    }

    /// Opens a store here. The caller closes it.
    public func open(configure: (inout StoreConfiguration) -> Void = { _ in }) throws -> any EventStore {
        var config = testConfiguration(directory)
        configure(&config)
        switch backend {
        case .lmdb: return try Store(config)
        case .postgres: return try PostgresStore(url: database!.url, configuration: config)
        }
    }

    /// Opens a store, runs `body`, and closes it.
    public func withStore<T>(
        configure: (inout StoreConfiguration) -> Void = { _ in }, _ body: (any EventStore) async throws -> T
    ) async throws -> T {
        try await closing(try open(configure: configure), body)
    }

    public func remove() {
        directory.remove()
        database?.remove()
    }
}
