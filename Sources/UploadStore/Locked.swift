import Foundation

/// A value behind a lock, with `Mutex`'s `withLock` shape.
///
/// Not the standard library's `Mutex`: on Linux its lock is a futex inside the prebuilt
/// Synchronization library, which ThreadSanitizer cannot see, so TSan reports every guarded access
/// as a race and `Tools/sanitize` would fail on correct code.
/// `NSLock` is a pthread mutex, which TSan understands.
public final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Work done once however many callers ask, each of whom waits for it: a store's close.
final class Once: Sendable {
    private let work = Locked<Task<Void, Never>?>(nil)

    /// Starts `body` on the first call; every call returns once it has finished.
    func run(_ body: @escaping @Sendable () async -> Void) async {
        let task = work.withLock { work in
            if work == nil { work = Task { await body() } }
            return work!
        }
        await task.value
    }
}
