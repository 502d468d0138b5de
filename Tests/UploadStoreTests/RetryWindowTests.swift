import Foundation
import Testing
import UploadCore
@testable import UploadStore
import UploadTesting

/// A retry is answered with its original result while its call lies in the ``RetryWindow``:
/// among the log's last `events` events and within `duration` of the retry.
struct RetryWindowTests {
    static func metadata(_ invocationId: String) -> RequestMetadata {
        RequestMetadata(requestId: UUID().uuidString, source: "test", principal: "AKIA1", invocationId: invocationId, requestDigest: "d-\(invocationId)")
    }

    static func initiate() throws -> Command { .initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app")) }

    static func create(_ store: Store) async throws {
        _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
    }

    @Test func aRetryInTheSameBatch_isAnsweredWithTheFirstAttempt() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            try await Self.create(store)
            let submission = CommandSubmission(try Self.initiate(), metadata: Self.metadata("inv-batch"))
            let results = await store.append([submission, submission])
            let first = try results[0].get(), second = try results[1].get()
            #expect(!first.isRetry && second.isRetry && second.events == first.events)
            #expect(try store.read { try $0.lastPosition() } == 2)
        }
    }

    @Test func aCallOlderThanTheWindowsEventCount_isTakenAsNew() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.retryWindow = RetryWindow(events: 3, duration: .seconds(3600)) }) { store in
            try await Self.create(store)
            let first = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))  // position 2
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 3
            let inside = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))
            #expect(inside.isRetry && inside.events == first.events, "position 2 is among the log's last 3 events (1...3)")
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 4
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 5
            let outside = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))
            #expect(!outside.isRetry && outside.events.map(\.position) == [6], "the log's last 3 events are 3...5")
        }
    }

    @Test func theWindow_isRebuiltFromTheLogAfterARestart_withinItsBounds() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let first = try await withTestStore(dir) { store in
            try await Self.create(store)
            return try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-restart"))
        }
        try await withTestStore(dir) { store in
            let retry = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-restart"))
            #expect(retry.isRetry && retry.events == first.events)
        }
        try await withTestStore(dir, configure: {
            $0.retryWindow = RetryWindow(events: 1, duration: .seconds(3600))
            $0.uploadIds = SequentialUploadIDs(start: 100)  // the ids of the first open are taken
        }) { store in
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())  // position 3
            let late = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-restart"))
            #expect(!late.isRetry && late.events.map(\.position) == [4], "position 2 is no longer the log's last event")
        }
    }
}
