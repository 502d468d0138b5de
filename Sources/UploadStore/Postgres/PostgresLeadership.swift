import Logging
import PostgresKit

/// Which node of a PostgreSQL deployment does each ``StoreDuty``: the one holding the duty's session
/// advisory lock, on a connection kept for it. The lock goes with the connection: a node that dies
/// gives the lead up at once, one whose machine or network is gone as soon as the server sees its
/// connection dead (``serverSideKeepalives``, about 20 s), and one frozen or stopped (whose kernel
/// still answers keepalives) once its connection has sat idle past twice the time between its
/// asks (``idleSessionLimit(askedAgainWithin:)``); another takes it at its next ask.
final class PostgresLeadership: Sendable {
    private let url: String
    /// ``StoreConfiguration/databaseAnswerLimit``: a frozen server costs the sweeper a lead, not
    /// a thread for ever.
    private let answerLimit: Duration?
    private let logger: Logger
    private let state = Locked<Lead>(Lead())
    /// Whether the last ask failed for want of the database: only a change is logged, so that a
    /// node that can never lead (no connection slot, a role refused) says so once, not never.
    private let failing = Locked(false)

    private struct Lead {
        var connection: PostgresConnection?
        var held: Set<StoreDuty> = []
        /// The `idle_session_timeout` the connection was given, in milliseconds.
        var idleLimit: Int64?
    }

    init(url: String, answerLimit: Duration?, logger: Logger) {
        self.url = url
        self.answerLimit = answerLimit
        self.logger = logger
    }

    /// The advisory lock of `duty`: "upld", 1, and the duty's place.
    static func lockKey(_ duty: StoreDuty) -> Int64 { 0x7570_6C64_0000_0100 + Int64(StoreDuty.allCases.firstIndex(of: duty)!) }

    /// How long the leading connection may sit idle before the server ends it, and the lead with
    /// it: twice the time between asks, and 10 s more, so that a slow ask (a busy thread pool, a
    /// long tidying) never costs a running node its lead.
    static func idleSessionLimit(askedAgainWithin interval: Duration) -> Int64 {
        let (seconds, attoseconds) = interval.components
        return 2 * (seconds * 1000 + attoseconds / 1_000_000_000_000_000) + 10_000
    }

    func leads(_ duty: StoreDuty, askedAgainWithin interval: Duration) -> Bool {
        let idleLimit = Self.idleSessionLimit(askedAgainWithin: interval)
        var failure: (any Error)?
        let leads = state.withLock { lead in
            // A kept connection that fails (the server ended it: idle past its limit while this
            // node stood frozen, or restarted) is replaced once, at once: the lead is asked for
            // afresh, and this node told it lost it rather than that the database is gone.
            for attempt in 0..<2 {
                let hadConnection = lead.connection != nil
                do {
                    return try ask(duty, idleLimit: idleLimit, &lead)
                } catch {
                    lead = Lead()
                    guard attempt == 0, hadConnection else { failure = error; return false }
                }
            }
            return false
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

    private func ask(_ duty: StoreDuty, idleLimit: Int64, _ lead: inout Lead) throws -> Bool {
        if lead.connection?.isUsable != true {
            let connection = try PostgresConnection(url: url)
            connection.answerLimit = answerLimit
            try connection.query(Self.serverSideKeepalives)
            _ = try? connection.query(Self.serverSideUserTimeout)  // PostgreSQL 12 on
            lead = Lead(connection: connection)
        }
        let connection = lead.connection!
        if lead.idleLimit != idleLimit {
            _ = try? connection.query("SELECT set_config('idle_session_timeout', '\(idleLimit)', false)")  // PostgreSQL 14 on
            lead.idleLimit = idleLimit
        }
        if lead.held.contains(duty) {
            try connection.query("SELECT 1")  // still connected, so still held
            return true
        }
        let rows = try connection.query("SELECT pg_try_advisory_lock($1)", [.int64(Self.lockKey(duty))])
        guard rows.bytes(0, 0) == [1] else { return false }
        lead.held.insert(duty)
        return true
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
    func resign() { state.withLock { $0 = Lead() } }
}
