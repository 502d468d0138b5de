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

    /// A call answered with CallAnswered holds its id against another operation even where no
    /// request digest tells them apart (metadata without one, as from before digests were kept):
    /// the mark's operation must be the retry's.
    @Test func aCallAnsweredMark_isAnotherOperationsMismatch_evenWithoutARequestDigest() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            try await Self.create(store)
            let metadata = RequestMetadata(requestId: UUID().uuidString, source: "test", principal: "AKIA1", invocationId: "inv-undigested")
            let arn = "arn:aws:ecr-public::\(testRegistryId):repository/team/app"
            let untag = Command.untagResource(try UntagResource(resourceArn: arn, tagKeys: ["absent"]))
            let first = try await store.execute(untag, metadata: metadata)
            #expect(first.events.map(\.event.type) == [.callAnswered])
            #expect(try await store.execute(untag, metadata: metadata).isRetry)
            let other = Command.batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageTag: "absent")]))
            let error = await #expect(throws: CommandError.self) { try await store.execute(other, metadata: metadata) }
            #expect(error?.code == .idempotentParameterMismatch)
            #expect(try store.read { try $0.lastPosition() } == 2)
        }
    }

    /// A call the writer takes only as a retry (``CommandSubmission/refusalUnlessRetry``) is
    /// answered as recorded when it is one, and refused otherwise, writing nothing. Reusing another
    /// call's id is a mismatch only for a caller refused by the state (``answersMismatch``); one
    /// refused its authority is told nothing of the other call.
    @Test func aCallTakenOnlyAsARetry_isAnsweredAsRecorded_orRefused() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            try await Self.create(store)
            let first = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-once"))
            let refusal = CommandError(.repositoryNotFound, "refused as the snapshot decided")
            let retry = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-once"), refusalUnlessRetry: refusal)
            #expect(retry.isRetry && retry.events == first.events)
            var reused = Self.metadata("inv-once")
            reused.requestDigest = "another body"
            for answersMismatch in [false, true] {
                let error = await #expect(throws: CommandError.self) {
                    try await store.execute(try Self.initiate(), metadata: reused, refusalUnlessRetry: refusal, answersMismatch: answersMismatch)
                }
                #expect(error?.code == (answersMismatch ? .idempotentParameterMismatch : .repositoryNotFound))
            }
            let fresh = await #expect(throws: CommandError.self) {
                try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-new"), refusalUnlessRetry: refusal, answersMismatch: true)
            }
            #expect(fresh?.code == .repositoryNotFound, "not a retry: refused as asked, though the state would take it")
            #expect(try store.read { try $0.lastPosition() } == 2)
        }
    }

    /// Invocation ids are compared by their bytes, as every key is: two ids that differ only in
    /// Unicode normalisation (`String`'s `==` equates them) are two calls, before a restart and after.
    @Test func invocationIdsThatDifferOnlyInNormalisation_areTwoCalls() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let composed = "inv-\u{E9}", decomposed = "inv-e\u{301}"
        #expect(composed == decomposed)
        let first = try await withTestStore(dir) { store in
            try await Self.create(store)
            let first = try await store.execute(try Self.initiate(), metadata: Self.metadata(composed))
            let second = try await store.execute(try Self.initiate(), metadata: Self.metadata(decomposed))
            #expect(!second.isRetry && second.events.map(\.position) == [3])
            return first
        }
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 100) }) { store in
            let retry = try await store.execute(try Self.initiate(), metadata: Self.metadata(composed))
            #expect(retry.isRetry && retry.events == first.events)
            let retryOfSecond = try await store.execute(try Self.initiate(), metadata: Self.metadata(decomposed))
            #expect(retryOfSecond.isRetry && retryOfSecond.events.map(\.position) == [3])
        }
    }

    /// A batch that records no event still evicts by its time. When the wall clock then steps
    /// back, the next transaction decides at that time, not earlier: a call the window has
    /// forgotten is outside the window by its own rule too, and the next event is recorded no
    /// earlier than the window evicted by.
    @Test func afterAClockStepBack_theWriterDecidesNoEarlierThanItsWindowEvicted() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let clock = TestClock()
        try await withTestStore(dir, configure: { $0.clock = clock; $0.retryWindow = RetryWindow(events: 1_000, duration: .seconds(10)) }) { store in
            try await Self.create(store)
            let early = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-early"))
            clock.advance(milliseconds: 20_000)
            let evictedAt = clock.now()
            // Refused, so it records nothing; its transaction evicts `inv-early`, 20 s old.
            await #expect(throws: CommandError.self) {
                _ = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "no/such")), metadata: testMetadata())
            }
            clock.advance(milliseconds: -15_000)
            let retry = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-early"))
            #expect(!retry.isRetry && retry.events != early.events)
            #expect(retry.events.map(\.recordedAt) == [evictedAt])
        }
    }

    @Test func aCallOlderThanTheWindowsEventCount_isTakenAsNew() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.retryWindow = RetryWindow(events: 3, duration: .seconds(3600)) }) { store in
            try await Self.create(store)
            let first = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))  // position 2
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 3
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 4
            let inside = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))
            #expect(inside.isRetry && inside.events == first.events, "position 2 is the oldest of the log's last 3 events (2...4)")
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())                     // 5
            let outside = try await store.execute(try Self.initiate(), metadata: Self.metadata("inv-old"))
            #expect(!outside.isRetry && outside.events.map(\.position) == [6], "the log's last 3 events are 3...5")
        }
    }

    /// A call whose events straddle the window's start lies outside it, as a whole: a restarted
    /// writer must not take its tail end for a shorter call and answer a retry with part of it.
    @Test func aCallCutByTheWindowsStart_afterARestart_isTakenAsNew_notAnsweredInPart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let window = RetryWindow(events: 2, duration: .seconds(3600))
        let delete = Command.deleteRepository(try DeleteRepository(repositoryName: "team/app", force: true))
        let deleted = try await withTestStore(dir, configure: { $0.retryWindow = window }) { store in
            try await Self.create(store)                                                         // 1
            _ = try await store.execute(try Self.initiate(), metadata: testMetadata())          // 2
            let deleted = try await store.execute(delete, metadata: Self.metadata("inv-delete"))  // 3, 4
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/other")), metadata: testMetadata())  // 5
            return deleted
        }
        #expect(deleted.events.map(\.position) == [3, 4])
        try await withTestStore(dir, configure: {
            $0.retryWindow = window
            $0.uploadIds = SequentialUploadIDs(start: 100)
        }) { store in
            // The window is positions 4...5: the call began at 3, so its retry is decided anew.
            await #expect {
                _ = try await store.execute(delete, metadata: Self.metadata("inv-delete"))
            } throws: { ($0 as? CommandError)?.code == .repositoryNotFound }
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
