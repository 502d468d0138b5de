import PostgresKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// The PostgreSQL writer sends a batch in two round trips (``PostgresConnection/pipeline(_:)``) and
/// keeps the Merkle tree's right edge between batches instead of reading it back.
struct PostgresPipelineTests {
    @Test func aPipeline_returnsEachQuerysRows_inOrder() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let rows = try connection.pipeline([
            .init("SELECT $1::bigint", [.int64(7)]), .init("SELECT 'x'::text UNION ALL SELECT 'y'"), .init("SELECT $1::bytea", [.bytes([1, 2])]),
        ])
        #expect(rows.count == 3)
        #expect(try rows[0].int64(0, 0) == 7)
        #expect(rows[1].count == 2 && rows[1].text(0, 0) == "x" && rows[1].text(1, 0) == "y")
        #expect(rows[2].bytes(0, 0) == [1, 2])
        // Out of pipeline mode again: an ordinary query works.
        #expect(try connection.query("SELECT 1::bigint").int64(0, 0) == 1)
    }

    @Test func aFailingQuery_skipsThoseAfterIt_andItsCommitDoesNotHappen() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE t (k bigint PRIMARY KEY)")
        let insert = "INSERT INTO t (k) VALUES ($1)"
        var thrown: PostgresError?
        do {
            try connection.pipeline([
                .init("BEGIN"), .init(insert, [.int64(1)]), .init(insert, [.int64(1)]), .init(insert, [.int64(3)]), .init("COMMIT"),
            ])
        } catch {
            thrown = error
        }
        #expect(thrown?.sqlState == "23505", "the duplicate key is the error thrown, not a skipped query's")
        #expect(connection.isUsable)
        #expect(!connection.isIdle, "the transaction is left failed, for the caller to roll back")
        try connection.execute("ROLLBACK")
        #expect(try connection.query("SELECT count(*) FROM t").int64(0, 0) == 0, "nothing before or after the failure was kept")
    }

    @Test func oneNode_batchAfterBatch_buildsTheSameTreeFromItsRightEdge_evenWhenAnotherNodeWritesBetween() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await PostgresStoreTests.withNodes(2, location) { nodes in
            _ = try await nodes[0].execute(try PostgresStoreTests.create("team/app"), metadata: testMetadata())
            // One command a batch, across many power-of-two boundaries; every ninth from the other
            // node, so that the first node's kept edge is stale and must be dropped.
            for n in 1...150 {
                let node = nodes[n % 9 == 0 ? 1 : 0]
                _ = try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata())
            }
            #expect(try nodes[0].merkleRoot().rootHash == nodes[1].merkleRoot().rootHash)
        }
        let report = Replayer.verify(databaseURL: location.database!.url)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.events == 151)
    }
}
