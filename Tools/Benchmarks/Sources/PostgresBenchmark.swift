import Foundation
import PostgresKit
import UploadCore
import UploadStore

/// The PostgreSQL backend's appends: durable InitiateLayerUpload commands from C callers through
/// one or more `PostgresStore` nodes on one database, against a plain batched INSERT of records of
/// the same size, B = C to a transaction, with synchronous commit, on the same server.
struct PostgresBenchmark {
    /// The server's URL (its maintenance database); each run makes a database of its own.
    let serverURL: String
    let workDirectory: String

    /// Commands a second through `nodes` stores on one database, `callers` spread over them.
    func append(nodes nodeCount: Int, callers: Int, commands: Int) async throws -> (perSecond: Double, meanRecordBytes: Int) {
        try await withDatabase { url in
            var settings = DecisionSettings(defaultRegistryId: StoreConfiguration.fallbackRegistryId)
            settings.maximumActiveUploadsPerRepository = .max
            let configuration = StoreConfiguration(directory: workDirectory, settings: settings)
            let nodes = try (0..<nodeCount).map { _ in try PostgresStore(url: url, configuration: configuration) }
            for i in 0..<StoreFixture.repositoryCount {
                _ = try await nodes[0].execute(.createRepository(CreateRepository(repositoryName: StoreFixture.repository(i))), metadata: StoreFixture.metadata(0))
            }
            let perCaller = commands / callers
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<callers {
                    let node = nodes[caller % nodeCount]
                    group.addTask {
                        let command = Command.initiateLayerUpload(try InitiateLayerUpload(repositoryName: StoreFixture.repository(caller)))
                        for n in 0..<perCaller { _ = try await node.execute(command, metadata: StoreFixture.metadata(caller * perCaller + n)) }
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = (ContinuousClock.now - started).seconds
            let meanBytes = try nodes[0].read { snapshot in
                let records = try snapshot.eventRecords(from: UInt64(StoreFixture.repositoryCount) + 1, count: 10_000)
                return records.isEmpty ? 0 : records.reduce(0) { $0 + $1.count } / records.count
            }
            for node in nodes { await node.close() }
            return (Double(perCaller * callers) / elapsed, meanBytes)
        }
    }

    /// The floor: `records` rows of `recordBytes` bytes inserted into a two-column table, `batch`
    /// to a transaction (one multi-row INSERT), committed durably, on one connection; a batch of
    /// one is a lone INSERT in a transaction of its own, without `BEGIN` and `COMMIT`.
    func plainInserts(records: Int, recordBytes: Int, batch: Int) async throws -> Double {
        try await withDatabase { url in
            let connection = try PostgresConnection(url: url)
            try connection.execute("CREATE TABLE log (position bigint PRIMARY KEY, record bytea NOT NULL)")
            var random = SystemRandomNumberGenerator()
            let record = (0..<recordBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
            let placeholders = (0..<batch).map { "($\(2 * $0 + 1), $\(2 * $0 + 2))" }.joined(separator: ", ")
            let sql = "INSERT INTO log (position, record) VALUES " + placeholders
            var position: Int64 = 0
            let started = ContinuousClock.now
            for _ in 0..<(records / batch) {
                var parameters: [PostgresValue] = []
                for _ in 0..<batch {
                    position += 1
                    parameters += [.int64(position), .bytes(record)]
                }
                // One row alone is committed by its own statement: one round trip, the floor.
                if batch == 1 { try connection.query(sql, parameters) } else { _ = try connection.transaction { try connection.query(sql, parameters) } }
            }
            return Double(records / batch * batch) / (ContinuousClock.now - started).seconds
        }
    }

    private func withDatabase<T>(_ body: (String) async throws -> T) async throws -> T {
        let name = "uc_bench_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let admin = try PostgresConnection(url: serverURL)
        try admin.execute("CREATE DATABASE \(name)")
        defer { _ = try? admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        guard let slash = serverURL.lastIndex(of: "/") else { throw BenchError("the database URL names no database") }
        return try await body(serverURL[..<slash] + "/" + name)
    }
}
