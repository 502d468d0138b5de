import NIOPosix
import Synchronization
public import UploadStore

extension SnapshotReading {
    /// Runs `body` against one consistent snapshot without blocking the cooperative pool: a store
    /// whose reads wait on the network (``UploadStore/SnapshotReading/readsWaitOnTheNetwork``:
    /// PostgreSQL) is read on ``NetworkReads/threads``; LMDB, read from memory, where it is asked.
    /// - Throws: ``StoreError`` `.overloaded` (ThrottlingException) when ``NetworkReads/mostWaiting``
    ///   reads already wait or run: a slow or restarting database makes callers retry, not queue.
    public func reading<T: Sendable>(_ body: @escaping @Sendable (any StoreSnapshot) throws -> T) async throws -> T {
        try await offTheCooperativePool { try self.read(body) }
    }

    /// Runs `work`, a blocking call that reads this store (its statistics, say), as ``reading(_:)``
    /// runs a read: on ``NetworkReads/threads`` when reads wait on the network, else where asked.
    /// - Throws: ``StoreError`` `.overloaded` as ``reading(_:)`` does.
    public func offTheCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard readsWaitOnTheNetwork else { return try work() }
        guard NetworkReads.admitted.wrappingAdd(1, ordering: .relaxed).newValue <= NetworkReads.mostWaiting else {
            NetworkReads.admitted.wrappingSubtract(1, ordering: .relaxed)
            throw StoreError(.overloaded, "\(NetworkReads.mostWaiting) reads of the database are already waiting; try again")
        }
        defer { NetworkReads.admitted.wrappingSubtract(1, ordering: .relaxed) }
        return try await NetworkReads.threads.runIfActive(work)
    }
}

enum NetworkReads {
    /// The threads async callers' reads that wait on the network run on, never on the cooperative
    /// pool, which has only as many threads as cores. Process-wide and never stopped, as the
    /// feeds' thread.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    /// The most reads waiting for, or running on, ``threads`` at once.
    static let mostWaiting = 1024
    static let admitted = Atomic<Int>(0)
}
