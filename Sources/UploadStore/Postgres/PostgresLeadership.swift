import Dispatch
import Logging
import PostgresKit

/// Which node of a PostgreSQL deployment does each ``StoreDuty``: the one holding the duty's session
/// advisory lock, on a connection kept for it. The lock goes with the connection: a node that dies
/// gives the lead up at once, one whose machine or network is gone as soon as the server sees its
/// connection dead (``serverSideKeepalives``, about 20 s), and one frozen or stopped (`SIGSTOP`, a
/// paused VM: its kernel still answers keepalives) once the connection has sat idle past
/// ``idleLimit``: a timer of the process touches the connection every ``keepAliveInterval``,
/// which a frozen process no longer does. Another node takes the lead at its
/// next ask; the thawed one learns it lost it at its own.
final class PostgresLeadership: Sendable {
    private let url: String
    /// ``StoreConfiguration/databaseAnswerLimit``: a frozen server costs the sweeper a lead, not
    /// a thread for ever.
    private let answerLimit: Duration?
    private let logger: Logger
    private let idleLimit: Duration
    private let state = Locked<Lead>(Lead())
    /// Whether the last ask failed for want of the database: only a change is logged, so that a
    /// node that can never lead (no connection slot, a role refused) says so once, not never.
    private let failing = Locked(false)
    /// `nil` where the process is not to touch its lead (a test's frozen holder).
    nonisolated(unsafe) private let keepAlive: (any DispatchSourceTimer)?

    /// How often a held lead's connection is touched, and how long it may sit idle before the
    /// server ends it (`idle_session_timeout`, PostgreSQL 14 on; older servers keep a frozen
    /// node's lead as long as its connection lasts).
    static let keepAliveInterval = Duration.seconds(5)
    static let idleLimit = Duration.seconds(30)

    private struct Lead {
        var connection: PostgresConnection?
        var held: Set<StoreDuty> = []
    }

    init(url: String, answerLimit: Duration?, logger: Logger,
         keepAliveInterval: Duration? = PostgresLeadership.keepAliveInterval, idleLimit: Duration = PostgresLeadership.idleLimit) {
        self.url = url
        self.answerLimit = answerLimit
        self.logger = logger
        self.idleLimit = idleLimit
        keepAlive = keepAliveInterval.map { interval in
            let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "upload-coordinator.leadership"))
            let nanoseconds = Int(interval.components.seconds) * 1_000_000_000 + Int(interval.components.attoseconds / 1_000_000_000)
            timer.schedule(deadline: .now() + .nanoseconds(nanoseconds), repeating: .nanoseconds(nanoseconds))
            return timer
        }
        keepAlive?.setEventHandler { [weak self] in self?.touch() }
        keepAlive?.resume()
    }

    deinit { keepAlive?.cancel() }

    /// The advisory lock of `duty`: "upld", 1, and the duty's place.
    static func lockKey(_ duty: StoreDuty) -> Int64 { 0x7570_6C64_0000_0100 + Int64(StoreDuty.allCases.firstIndex(of: duty)!) }

    func leads(_ duty: StoreDuty) -> Bool {
        var failure: (any Error)?
        let leads = state.withLock { lead in
            // A kept connection the server ended (idle past its limit while this node stood
            // frozen, or restarted) is replaced once, at once: the lead is asked for afresh, and
            // this node told it lost it rather than that the database is gone. Not one that went
            // unanswered: a second wait as long would hold the sweeper, and a close, for as long.
            for attempt in 0..<2 {
                let hadConnection = lead.connection != nil
                do {
                    return try ask(duty, &lead)
                } catch {
                    lead = Lead()
                    let unanswered = (error as? PostgresError)?.wentUnanswered ?? false
                    guard attempt == 0, hadConnection, !unanswered else { failure = error; return false }
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

    private func ask(_ duty: StoreDuty, _ lead: inout Lead) throws -> Bool {
        if lead.connection?.isUsable != true {
            let connection = try PostgresConnection(url: url)
            connection.answerLimit = answerLimit
            try Self.limitServerSideWaits(connection, idleLimit: idleLimit)
            lead = Lead(connection: connection)
        }
        let connection = lead.connection!
        if lead.held.contains(duty) {
            try connection.query("SELECT 1")  // still connected, so still held
            return true
        }
        let rows = try connection.query("SELECT pg_try_advisory_lock($1)", [.int64(Self.lockKey(duty))])
        guard rows.bytes(0, 0) == [1] else { return false }
        lead.held.insert(duty)
        return true
    }

    /// The timer's touch of the kept connection, so that it never sits idle while this process
    /// runs, however long its duty's work takes between asks (a node that does not lead keeps its
    /// connection too, rather than have the server end it between asks). A failure gives the
    /// lead up here; the next ask finds out whether it is still this node's.
    private func touch() {
        state.withLock { lead in
            guard let connection = lead.connection else { return }
            if (try? connection.query("SELECT 1")) == nil { lead = Lead() }
        }
    }

    /// Has the server end `connection` once its peer stops answering (about 20 s) or leaves it
    /// idle past `idleLimit` (a frozen node: its kernel still answers keepalives), rather than
    /// hold what the session holds (a lock, the notification queue's tail) for the server's
    /// default two hours, or for ever. For connections that a running node uses at least every
    /// few seconds.
    static func limitServerSideWaits(_ connection: PostgresConnection, idleLimit: Duration) throws {
        try connection.query(serverSideKeepalives)
        _ = try? connection.query(serverSideUserTimeout)  // PostgreSQL 12 on
        let milliseconds = idleLimit.components.seconds * 1000 + idleLimit.components.attoseconds / 1_000_000_000_000_000
        _ = try? connection.query("SELECT set_config('idle_session_timeout', '\(milliseconds)', false)")  // PostgreSQL 14 on
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
