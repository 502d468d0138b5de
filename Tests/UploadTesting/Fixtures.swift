import Foundation
import UploadCore
import UploadStore

/// A clock the test sets. Starts at 2026-11-29T00:00:00Z.
public final class TestClock: UploadCore.Clock {
    private let current = Locked(Timestamp(millisecondsSinceEpoch: 1_796_083_200_000))

    public init() {}

    public func now() -> Timestamp { current.withLock { $0 } }
    public func set(_ t: Timestamp) { current.withLock { $0 = t } }
    public func advance(milliseconds: Int64) {
        current.withLock { $0 = Timestamp(millisecondsSinceEpoch: $0.millisecondsSinceEpoch + milliseconds) }
    }
}

/// Upload ids `00000000-0000-4000-8000-000000000001`, `…002`, … in order, from `start`.
public final class SequentialUploadIDs: UploadIDGenerator {
    private let counter: Locked<UInt64>

    public init(start: UInt64 = 1) { counter = Locked(start) }

    public func next() -> String {
        let n = counter.withLock { value in
            defer { value += 1 }
            return value
        }
        let hex = String(n, radix: 16)
        return "00000000-0000-4000-8000-" + String(repeating: "0", count: 12 - hex.count) + hex
    }
}

public let testRegistryId = "123456789012"

public func testMetadata(_ requestId: String = "req-1") -> RequestMetadata {
    RequestMetadata(requestId: requestId, source: "test", userAgent: "tests/1")
}

/// A fresh directory under the system temp directory, removed by ``remove()``.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "uc") {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Store configuration for tests: the test registry, a test clock and sequential ids.
public func testConfiguration(
    _ directory: TemporaryDirectory, clock: TestClock = TestClock(), ids: SequentialUploadIDs = SequentialUploadIDs()
) -> StoreConfiguration {
    var config = StoreConfiguration(directory: directory.path, settings: DecisionSettings(defaultRegistryId: testRegistryId))
    config.clock = clock
    config.uploadIds = ids
    return config
}

/// Opens a store in `directory`, runs `body`, and closes it, so the next open in this process works.
public func withTestStore<T>(
    _ directory: TemporaryDirectory, configure: (inout StoreConfiguration) -> Void = { _ in },
    _ body: (Store) async throws -> T
) async throws -> T {
    var config = testConfiguration(directory)
    configure(&config)
    return try await closing(try Store(config), body)
}

/// Runs `body` with `store`, then closes the store, whether `body` returned or threw.
public func closing<S: EventStore, T>(_ store: S, _ body: (S) async throws -> T) async throws -> T {
    do {
        let result = try await body(store)
        await store.close()
        return result
    } catch {
        await store.close()
        throw error
    }
}

extension EventStore {
    /// Starts an upload through the store alone: the new id and part size.
    public func initiateLayerUpload(
        _ command: InitiateLayerUpload, metadata: RequestMetadata
    ) async throws -> (uploadId: String, partSize: UInt64) {
        let outcome = try await execute(.initiateLayerUpload(command), metadata: metadata)
        guard case .uploadInitiated(let started)? = outcome.events.first?.event else {
            throw CommandError(.server, "InitiateLayerUpload recorded no UploadInitiated")
        }
        return (started.uploadId, started.partSize)
    }
}
