import Foundation
import PostgresKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// A server that keeps its connections open and never answers (frozen, or a commit waiting on a
/// synchronous standby that is gone) costs a request its answer limit, not a thread for ever.
struct PostgresAnswerLimitTests {
    /// Time `body` takes, in seconds.
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    @Test func aRoundTripPastTheLimit_isCut_andTheConnectionIsNotUsedAgain() throws {
        let connection = try PostgresConnection(url: testDatabaseServerURL())
        connection.answerLimit = .milliseconds(300)
        var caught: PostgresError?
        let elapsed = Self.seconds { do { try connection.query("SELECT pg_sleep(20)") } catch { caught = error as? PostgresError } }
        let error = try #require(caught)
        #expect(error.wentUnanswered && error.isConnectionFailure, "\(error)")
        #expect(error.message.contains("no answer within"), "\(error)")
        #expect(elapsed < 10, "cut after \(elapsed) s, not at the statement's end (20 s)")
        #expect(!connection.isUsable)
    }

    @Test func aRoundTripWithinTheLimit_leavesTheConnectionAlone() throws {
        let connection = try PostgresConnection(url: testDatabaseServerURL())
        connection.answerLimit = .milliseconds(500)
        try connection.query("SELECT pg_sleep(0.1)")
        try connection.pipeline([.init("SELECT 1"), .init("SELECT pg_sleep(0.1)")])
        // Past the limit of the round trips above: their watchdogs were called off.
        Thread.sleep(forTimeInterval: 0.8)
        #expect(connection.isUsable)
        #expect(try connection.query("SELECT 41 + 1").int64(0, 0) == 42)
    }

    @Test func answeringWithin_setsTheLimitForItsBodyOnly() throws {
        let connection = try PostgresConnection(url: testDatabaseServerURL())
        connection.answerLimit = .milliseconds(300)
        try connection.answering(within: nil) { try connection.query("SELECT pg_sleep(0.6)") }
        #expect(connection.isUsable, "unbounded inside: the 0.6 s statement ran to its end")
        #expect(throws: PostgresError.self) { try connection.pipeline([.init("SELECT pg_sleep(20)")]) }
        #expect(!connection.isUsable, "the limit is back after it, and bounds a pipeline too")
    }

    /// The writer and the API's reads, with the log's table locked by another session: each fails
    /// at the store's answer limit (not the append lock's 30 s, not never), and both work again
    /// once the lock is gone, on connections of their own making.
    @Test func aStoreWhoseServerDoesNotAnswer_failsWritesAndReadsAtItsLimit_thenRecovers() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let store = try location.open { $0.databaseAnswerLimit = .seconds(1) }
        let created = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
        #expect(created.events.map(\.position) == [1])

        let locker = try PostgresConnection(url: try #require(location.database?.url))
        try locker.execute("BEGIN")
        try locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        let start = ContinuousClock.now
        await #expect(throws: StoreError.self) {
            _ = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app")), metadata: testMetadata())
        }
        #expect(throws: StoreError.self) { _ = try store.read { try $0.lastPosition() } }
        #expect(ContinuousClock.now - start < .seconds(15), "two cuts of about 1 s each, not the append lock's 30 s")
        try locker.execute("COMMIT")

        let initiated = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app")), metadata: testMetadata())
        #expect(initiated.events.map(\.position) == [2], "the cut write was not kept, and the log stays dense")
        #expect(try store.read { try $0.events() }.map(\.position) == [1, 2])
        await store.close()
    }
}
