import Synchronization
import Testing
@testable import UploadService
import UploadStore
import UploadTesting

/// An upload's lock is waited for at most a bound: a request behind a chunk streaming in slowly
/// waited as long as that chunk took, its task held, and such waiters piled up without limit.
struct UploadLockTests {
    /// The order in which work ran, from any task.
    final class Order: Sendable {
        private let names = Mutex<[String]>([])
        func ran(_ name: String) { names.withLock { $0.append(name) } }
        var all: [String] { names.withLock { $0 } }
    }

    /// A task that holds `key` of `lock` until the continuation it returns is yielded to; returned
    /// once it holds it.
    static func hold(_ key: String, of lock: KeyedLock) async -> (holder: Task<Void, any Error>, release: AsyncStream<Void>.Continuation) {
        let (entered, enteredSignal) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseSignal) = AsyncStream.makeStream(of: Void.self)
        let holder = Task {
            try await lock.withLock(key, waitingAtMost: .seconds(30)) {
                enteredSignal.yield()
                for await _ in release { break }
            }
        }
        for await _ in entered { break }
        return (holder, releaseSignal)
    }

    @Test(.timeLimit(.minutes(1))) func aWaiterGivesUpAfterItsBound_andTheLockStillPassesInOrder() async throws {
        let lock = KeyedLock()
        let (holder, releaseSignal) = await Self.hold("upload", of: lock)
        // Held: a waiter with a short bound gives up, and its work never runs.
        await #expect(throws: KeyedLock.WaitedTooLong.self) {
            try await lock.withLock("upload", waitingAtMost: .milliseconds(50)) { Issue.record("ran while the lock was held") }
        }
        try await lock.withLock("another upload", waitingAtMost: .milliseconds(50)) {}  // not held
        // One that gives up between two others leaves the queue; the others run in their order
        // once the holder ends. Its bound is long enough for `last` to queue behind it first.
        let order = Order()
        func waitForWaiters(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(2)
            while await lock.waiterCount("upload") < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(await lock.waiterCount("upload") == count, "queued in time")
        }
        let first = Task { try await lock.withLock("upload", waitingAtMost: .seconds(30)) { order.ran("first") } }
        try await waitForWaiters(1)
        let impatient = Task { try await lock.withLock("upload", waitingAtMost: .seconds(3)) { order.ran("impatient") } }
        try await waitForWaiters(2)
        let last = Task { try await lock.withLock("upload", waitingAtMost: .seconds(30)) { order.ran("last") } }
        try await waitForWaiters(3)
        await #expect(throws: KeyedLock.WaitedTooLong.self) { try await impatient.value }
        #expect(await lock.waiterCount("upload") == 2, "the one in the middle left; the first and the last wait on")
        releaseSignal.yield()
        try await holder.value
        try await first.value
        try await last.value
        #expect(order.all == ["first", "last"])
        try await lock.withLock("upload", waitingAtMost: .milliseconds(50)) {}  // free again
    }

    /// A waiter whose task is cancelled (as a request's is when the server stops) leaves the queue
    /// at once, not at its bound, and the lock still passes to the waiters behind it.
    @Test(.timeLimit(.minutes(1))) func aCancelledWaiter_leavesTheQueueAtOnce() async throws {
        let lock = KeyedLock()
        let (holder, releaseSignal) = await Self.hold("upload", of: lock)
        let order = Order()
        let cancelled = Task { try await lock.withLock("upload", waitingAtMost: .seconds(30)) { order.ran("cancelled") } }
        while await lock.waiterCount("upload") < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let behind = Task { try await lock.withLock("upload", waitingAtMost: .seconds(30)) { order.ran("behind") } }
        while await lock.waiterCount("upload") < 2 { try await Task.sleep(for: .milliseconds(5)) }
        let started = ContinuousClock.now
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(ContinuousClock.now - started < .seconds(10), "left at once, not at its 30 s bound")
        #expect(await lock.waiterCount("upload") == 1)
        releaseSignal.yield()
        try await holder.value
        try await behind.value
        #expect(order.all == ["behind"])
    }

    /// Another process or node holding the upload's staging lock counts against the same bound,
    /// and the refusal is one clients retry (ThrottlingException, TOOMANYREQUESTS).
    @Test(.timeLimit(.minutes(1))) func aStagingLockHeldElsewhere_isWaitedForAtMostTheBound_thenRefusedAsOverloaded() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let here = try BlobStore(directory: dir.path), otherNode = BlobStore(existing: dir.path)
        let locks = UploadLocks(here, longestWait: .milliseconds(200))
        let held = try #require(try otherNode.tryLockStaging("upload-1"))
        let started = ContinuousClock.now
        do {
            _ = try await locks.withLock("upload-1") { Issue.record("ran while another node held the upload") }
            Issue.record("not refused")
        } catch let error as StoreError {
            #expect(error.code == .overloaded && error.message.contains("upload-1"), "\(error)")
        }
        #expect(ContinuousClock.now - started >= .milliseconds(200))
        held.release()
        #expect(try await locks.withLock("upload-1") { "ran" } == "ran")
    }
}
