import PostgresKit

/// Which node of a PostgreSQL deployment does each ``StoreDuty``: the one holding the duty's session
/// advisory lock, on a connection kept for it. The lock goes with the connection, so a node that
/// dies or loses the server gives the lead up at once, and another takes it at its next ask.
final class PostgresLeadership: Sendable {
    private let url: String
    private let state = Locked<(connection: PostgresConnection?, held: Set<StoreDuty>)>((nil, []))

    init(url: String) { self.url = url }

    /// The advisory lock of `duty`: "upld", 1, and the duty's place.
    static func lockKey(_ duty: StoreDuty) -> Int64 { 0x7570_6C64_0000_0100 + Int64(StoreDuty.allCases.firstIndex(of: duty)!) }

    func leads(_ duty: StoreDuty) -> Bool {
        state.withLock { state in
            do {
                if state.connection?.isUsable != true {
                    state = (try PostgresConnection(url: url), [])
                }
                let connection = state.connection!
                if state.held.contains(duty) {
                    try connection.query("SELECT 1")  // still connected, so still held
                    return true
                }
                let rows = try connection.query("SELECT pg_try_advisory_lock($1)", [.int64(Self.lockKey(duty))])
                guard rows.bytes(0, 0) == [1] else { return false }
                state.held.insert(duty)
                return true
            } catch {
                state = (nil, [])
                return false
            }
        }
    }

    /// Gives every lead up (closing the connection releases its locks).
    func resign() { state.withLock { $0 = (nil, []) } }
}
