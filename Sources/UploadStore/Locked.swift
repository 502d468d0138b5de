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
