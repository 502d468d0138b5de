import Logging
import PostgresKit

/// Which node of a PostgreSQL deployment does each ``StoreDuty``: the one holding the duty's session
/// advisory lock, on a connection kept for it. The lock goes with the connection: a node that dies
/// gives the lead up at once, and one whose machine or network is gone as soon as the server sees
/// its connection dead (``serverSideKeepalives``, about 20 s); another takes it at its next ask.
final class PostgresLeadership: Sendable {
    private let url: String
    /// ``StoreConfiguration/databaseAnswerLimit``: a frozen server costs the sweeper a lead, not
    /// a thread for ever.
    private let answerLimit: Duration?
    private let logger: Logger
    private let state = Locked<(connection: PostgresConnection?, held: Set<StoreDuty>)>((nil, []))
    /// Whether the last ask failed for want of the database: only a change is logged, so that a
    /// node that can never lead (no connection slot, a role refused) says so once, not never.
    private let failing = Locked(false)

    init(url: String, answerLimit: Duration?, logger: Logger) {
        self.url = url
        self.answerLimit = answerLimit
        self.logger = logger
    }

    /// The advisory lock of `duty`: "upld", 1, and the duty's place.
    static func lockKey(_ duty: StoreDuty) -> Int64 { 0x7570_6C64_0000_0100 + Int64(StoreDuty.allCases.firstIndex(of: duty)!) }

    func leads(_ duty: StoreDuty) -> Bool {
        var failure: (any Error)?
        let leads = state.withLock { state in
            do {
                if state.connection?.isUsable != true {
                    let connection = try PostgresConnection(url: url)
                    connection.answerLimit = answerLimit
                    try connection.query(Self.serverSideKeepalives)
                    _ = try? connection.query(Self.serverSideUserTimeout)  // PostgreSQL 12 on
                    state = (connection, [])
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
                failure = error
                return false
            }
        }
        if failing.withLock({ failing in defer { failing = failure != nil }; return failing != (failure != nil) }) {
            if let failure {
                logger.warning("this node cannot ask the database which node leads its duties (the expiry sweep); it leads none until it can", metadata: ["error": "\(failure)"])
            } else {
                logger.notice("this node asks the database which node leads its duties again")
            }
        }
        return leads
    }

    /// The server's side of the connection gives up on a peer that stopped answering after about
    /// 20 s, as the client's side does (``PostgresKit/PostgresConnection``): the server's own
    /// defaults wait two hours, and the session's lock with them, while this connection sits idle.
    static let serverSideKeepalives = """
        SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),
               set_config('tcp_keepalives_count', '3', false)
        """
    static let serverSideUserTimeout = "SELECT set_config('tcp_user_timeout', '20000', false)"

    /// Gives every lead up (closing the connection releases its locks).
    func resign() { state.withLock { $0 = (nil, []) } }
}
