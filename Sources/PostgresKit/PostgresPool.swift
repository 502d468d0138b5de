import Foundation

/// At most `size` connections to one database, handed to one caller at a time. A caller past the
/// limit waits for one to be returned. A connection that failed is closed instead of returned,
/// and so are the idle ones, which a server that went away closed too: the next caller opens a
/// new one, so after the server restarts, the pool reconnects by itself, and a read that ran
/// again after a lost connection does not meet another one.
public final class PostgresPool: @unchecked Sendable {
    public let url: String
    public let size: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var idle: [PostgresConnection] = []
    private var open = 0

    /// The longest a caller waits for a connection while all `size` are in use.
    public let longestWait: Duration

    /// Every connection of the pool stayed in use for ``longestWait``: the database is slow or
    /// gone, or the pool too small for the load. Nothing was sent; the caller may try again.
    public struct Exhausted: Error, CustomStringConvertible {
        public let size: Int
        public let waited: Duration
        public var description: String { "all \(size) connections to the database stayed in use for \(waited)" }
    }

    public init(url: String, size: Int, longestWait: Duration = .seconds(30)) {
        precondition(size > 0, "a pool holds at least one connection")
        self.url = url
        self.size = size
        self.longestWait = longestWait
    }

    /// Runs `body` with a connection of the pool; blocks while all `size` are in use, at most
    /// ``longestWait`` (then ``Exhausted``).
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try take()
        do {
            let value = try body(connection)
            give(back: connection, failed: false)
            return value
        } catch {
            give(back: connection, failed: (error as? PostgresError)?.endsTheSession ?? false)
            throw error
        }
    }

    private func take() throws -> PostgresConnection {
        condition.lock()
        let deadline = Date(timeIntervalSinceNow: Double(longestWait.components.seconds) + Double(longestWait.components.attoseconds) / 1e18)
        while idle.isEmpty && open >= size {
            guard condition.wait(until: deadline) || !(idle.isEmpty && open >= size) else {
                condition.unlock()
                throw Exhausted(size: size, waited: longestWait)
            }
        }
        if let connection = idle.popLast() {
            condition.unlock()
            return connection
        }
        open += 1
        condition.unlock()
        do {
            return try PostgresConnection(url: url)
        } catch {
            condition.lock()
            open -= 1
            condition.signal()
            condition.unlock()
            throw error
        }
    }

    private func give(back connection: PostgresConnection, failed: Bool) {
        condition.lock()
        if failed {
            open -= 1 + idle.count
            idle.removeAll()  // closed as they go
        } else if !connection.isUsable || !connection.isIdle {
            open -= 1
        } else {
            idle.append(connection)
        }
        condition.broadcast()
        condition.unlock()
    }
}
