import UploadStore

/// Serialises async work per key: the parts and completion of one upload run one at a time,
/// so two requests can never write the same staging file at once. Work for different keys runs
/// concurrently.
public actor KeyedLock {
    public init() {}

    /// Thrown when a key's lock was not had within the wait asked for; the work then never ran.
    public struct WaitedTooLong: Error {
        public let waited: Duration
    }

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    private var held: Set<String> = []
    private var waiting: [String: [Waiter]] = [:]
    private var nextWaiter: UInt64 = 0

    /// Runs `body` holding `key`'s lock, after the holders and waiters before it.
    /// - Parameter longestWait: how long to wait for the lock: a waiter that outwaits it leaves
    ///   the queue, so waiters for a key held long (a chunk streaming in slowly) cannot pile up.
    /// - Throws: ``WaitedTooLong`` when the lock was not had in time, `CancellationError` when the
    ///   task was cancelled while it waited, or what `body` throws.
    public func withLock<T: Sendable>(_ key: String, waitingAtMost longestWait: Duration, _ body: @Sendable () async throws -> T) async throws -> T {
        guard await acquire(key, waitingAtMost: longestWait) else {
            if Task.isCancelled { throw CancellationError() }
            throw WaitedTooLong(waited: longestWait)
        }
        do {
            let result = try await body()
            release(key)
            return result
        } catch {
            release(key)
            throw error
        }
    }

    /// - Returns: whether the lock is now held for the caller; false when it waited too long, or
    ///   its task was cancelled (at shutdown, say: Hummingbird cancels a request's task then, not
    ///   when its client leaves), which leaves the queue at once.
    private func acquire(_ key: String, waitingAtMost longestWait: Duration) async -> Bool {
        if held.insert(key).inserted { return true }
        let id = nextWaiter
        nextWaiter &+= 1
        let timer = Task {
            try? await Task.sleep(for: longestWait)
            if !Task.isCancelled { self.giveUp(key, id) }
        }
        defer { timer.cancel() }
        // The handler's task runs on this actor after the waiter is queued: the continuation's
        // closure runs here without a suspension in between.
        return await withTaskCancellationHandler {
            await withCheckedContinuation { waiting[key, default: []].append(Waiter(id: id, continuation: $0)) }
        } onCancel: {
            Task { await self.giveUp(key, id) }
        }
    }

    /// How many wait for `key`'s lock (not counting its holder).
    func waiterCount(_ key: String) -> Int { waiting[key]?.count ?? 0 }

    /// Takes a waiter that has waited too long, or whose task was cancelled, out of the queue;
    /// nothing if the lock reached it first.
    private func giveUp(_ key: String, _ id: UInt64) {
        guard var queue = waiting[key], let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let waiter = queue.remove(at: index)
        waiting[key] = queue.isEmpty ? nil : queue
        waiter.continuation.resume(returning: false)
    }

    private func release(_ key: String) {
        if var queue = waiting[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[key] = queue.isEmpty ? nil : queue
            next.continuation.resume(returning: true)  // ownership passes to the next waiter; `held` keeps the key
        } else {
            held.remove(key)
        }
    }
}

/// Serialises the parts, completion and clean-up of one upload: within this process (a queue per
/// upload, ``KeyedLock``), and across every process and node that shares its staging folder
/// (``BlobStore/StagingLock``). So two requests never write one staging file at once, wherever
/// they are sent.
public final class UploadLocks: Sendable {
    let local = KeyedLock()
    private let blobs: BlobStore
    /// The longest a request waits for its upload's lock, here and then across processes. Past
    /// it the request is refused as overloaded (ThrottlingException, TOOMANYREQUESTS), which
    /// clients retry, instead of waiting, a task held, for as long as the holder streams.
    let longestWait: Duration

    /// Twice the idle timeout, less a second (``longestWait(idleTimeout:)``), at the default
    /// idle timeout of 60 s.
    public static let standardWait = longestWait(idleTimeout: .seconds(60))

    /// The wait `serve` gives: longer than the idle timeout, so that a retried chunk outwaits the
    /// first attempt its client left behind (whose connection the idle timeout closes), and
    /// shorter than twice the idle timeout, after which the API's `ConnectionGuard` closes a
    /// connection whose body waits unread, so that the client gets a refusal it retries rather
    /// than a closed connection.
    public static func longestWait(idleTimeout: Duration) -> Duration {
        max(idleTimeout * 2 - .seconds(1), idleTimeout)
    }

    init(_ blobs: BlobStore, longestWait: Duration) {
        self.blobs = blobs
        self.longestWait = longestWait
    }

    func withLock<T: Sendable>(_ uploadId: String, _ body: @Sendable () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + longestWait
        do {
            return try await local.withLock(uploadId, waitingAtMost: longestWait) {
                let held = try await self.stagingLock(uploadId, until: deadline)
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                await Self.release(held)
                return try result.get()
            }
        } catch is KeyedLock.WaitedTooLong {
            throw waitedTooLong(uploadId)
        }
    }

    /// Waits for the upload's staging lock by looking again, at most every 50 ms, until
    /// `deadline`: another node's holder may keep it for minutes (a chunk streaming in), and a
    /// timer costs no thread.
    private func stagingLock(_ uploadId: String, until deadline: ContinuousClock.Instant) async throws -> BlobStore.StagingLock {
        var pause = Duration.milliseconds(1)
        while true {
            // A lock request is a round trip to the lock manager on NFS: off the cooperative pool.
            if let held = try await UploadService.blocking({ [blobs] in try blobs.tryLockStaging(uploadId) }) { return held }
            guard ContinuousClock.now < deadline else { throw waitedTooLong(uploadId) }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
    }

    /// Releases a staging lock off the cooperative pool, as it was taken (a round trip on NFS);
    /// here, when NIO's pool runs no work for this task (cancelled, or the process stopping).
    private static func release(_ held: BlobStore.StagingLock) async {
        do { try await UploadService.blocking { held.release() } } catch { held.release() }
    }

    private func waitedTooLong(_ uploadId: String) -> StoreError {
        StoreError(.overloaded, "Waited \(longestWait) behind another request to upload \(uploadId); try again")
    }
}
