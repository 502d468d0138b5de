/// Serialises async work per key: the parts and completion of one upload run one at a time,
/// so two requests can never write the same staging file at once. Work for different keys runs
/// concurrently.
public actor KeyedLock {
    public init() {}

    private var held: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    public func withLock<T: Sendable>(_ key: String, _ body: @Sendable () async throws -> T) async throws -> T {
        await acquire(key)
        do {
            let result = try await body()
            release(key)
            return result
        } catch {
            release(key)
            throw error
        }
    }

    private func acquire(_ key: String) async {
        if held.insert(key).inserted { return }
        await withCheckedContinuation { waiting[key, default: []].append($0) }
    }

    private func release(_ key: String) {
        if var queue = waiting[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[key] = queue.isEmpty ? nil : queue
            next.resume()  // ownership passes to the next waiter; `held` keeps the key
        } else {
            held.remove(key)
        }
    }
}

/// Serialises the parts, completion and clean-up of one upload: within this process (a queue per
/// upload, ``KeyedLock``), and across every process and node that shares its staging folder
/// (``BlobStore/StagingLock``). So two requests never write one staging file at once, wherever
/// they are sent.
final class UploadLocks: Sendable {
    private let local = KeyedLock()
    private let blobs: BlobStore

    init(_ blobs: BlobStore) { self.blobs = blobs }

    func withLock<T: Sendable>(_ uploadId: String, _ body: @Sendable () async throws -> T) async throws -> T {
        try await local.withLock(uploadId) {
            let held = try await self.stagingLock(uploadId)
            defer { held.release() }
            return try await body()
        }
    }

    /// Waits for the upload's staging lock by looking again, at most every 50 ms: another node's
    /// holder may keep it for minutes (a chunk streaming in), and a timer costs no thread.
    private func stagingLock(_ uploadId: String) async throws -> BlobStore.StagingLock {
        var pause = Duration.milliseconds(1)
        while true {
            if let held = try blobs.tryLockStaging(uploadId) { return held }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(50))
        }
    }
}
