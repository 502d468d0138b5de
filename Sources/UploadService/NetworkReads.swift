import NIOPosix
public import UploadStore

extension SnapshotReading {
    /// Runs `body` against one consistent snapshot without blocking the cooperative pool: a store
    /// whose reads wait on the network (``UploadStore/SnapshotReading/readsWaitOnTheNetwork``:
    /// PostgreSQL) is read on ``NetworkReads/threads``; LMDB, read from memory, where it is asked.
    public func reading<T: Sendable>(_ body: @escaping @Sendable (any StoreSnapshot) throws -> T) async throws -> T {
        guard readsWaitOnTheNetwork else { return try read(body) }
        return try await NetworkReads.threads.runIfActive { try self.read(body) }
    }
}

enum NetworkReads {
    /// The threads reads that wait on the network run on: enough for a pool of connections and
    /// callers waiting for one (at most its wait bound), never on the cooperative pool, which has
    /// only as many threads as cores. Process-wide and never stopped, as the feeds' thread.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()
}
