internal import CLibPQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One connection to PostgreSQL through libpq, Debian's `libpq-dev`: blocking calls, as LMDB's
/// are, so that a store keeps its transactions inside one synchronous closure on one thread and
/// never across an `await`. Bytes only: statements with binary parameters, binary results.
///
/// Not thread-safe: one thread uses a connection at a time (``PostgresPool`` hands them out).
public final class PostgresConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    /// The connection string, without its password, for messages.
    public let displayName: String

    /// The longest one round trip (a statement, a pipeline, a `BEGIN` or `COMMIT`) waits for the
    /// server before the connection is cut and the call fails as a lost connection; `nil` waits
    /// as long as the server takes. Keepalives and `tcp_user_timeout` notice a machine gone, not a
    /// server that keeps the connection open and never answers: one frozen, or a commit waiting
    /// on a synchronous standby that is gone. A cut leaves a commit's outcome unknown, as a lost
    /// connection does; cancelling instead (`statement_timeout`, `PQcancel`) would end that wait
    /// with the commit reported as done, though not replicated.
    public var answerLimit: Duration?

    /// Runs `body` with ``answerLimit`` set to `limit`, and puts the one before back after it: for
    /// a pooled connection, which other callers use unbounded (a migration, a copy).
    public func answering<T>(within limit: Duration?, _ body: () throws -> T) rethrows -> T {
        let before = answerLimit
        answerLimit = limit
        defer { answerLimit = before }
        return try body()
    }
    /// A second descriptor of the connection's socket, which the watchdog shuts down: a cut
    /// reaches this connection's socket even when libpq has just closed its own descriptor and
    /// the number was given to another file.
    private let socketToCut: Int32
    /// Guards the two below: an `NSLock`, which ThreadSanitizer sees (see `Locked`).
    private let watchLock = NSLock()
    /// When the round trip under way must have been answered, while one runs: ``Watchdog`` cuts
    /// the connection once it is past.
    private var answerDue: DispatchTime?
    /// Whether the watchdog cut the connection.
    private var wasCut = false

    /// What a connection uses unless the URL says otherwise: a server that does not answer is
    /// given up after 5 s, and a connection whose peer vanished (a machine gone, a network cut)
    /// after about 20 s, rather than TCP's hours, so no node waits that long on a lock it holds.
    static let defaults: [(String, String)] = [
        ("connect_timeout", "5"), ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"),
        ("keepalives_count", "3"), ("tcp_user_timeout", "20000"),
    ]

    /// Connects to `url` (`postgres://USER[:PASS]@HOST:PORT/DB`, or any libpq connection string),
    /// with ``defaults`` for what it does not set.
    public init(url: String) throws(PostgresError) {
        displayName = PostgresConnection.withoutPassword(url)
        // libpq's own words for a string it cannot read quote the piece it stopped at, which is
        // often the password (a bare `%` in it): never repeated.
        guard Self.isReadable(url) else {
            throw PostgresError(
                sqlState: nil, message: "the database URL cannot be read as a connection string (in a URL, a password's %, @, / and : must be percent-encoded)",
                operation: "connect to \(displayName)", connecting: true)
        }
        // Keywords before `dbname` are overridden by what the expanded URL sets.
        let pairs = Self.defaults + [("dbname", url)]
        let keywords = pairs.map { strdup($0.0) } + [nil], values = pairs.map { strdup($0.1) } + [nil]
        defer { (keywords + values).forEach { free($0) } }
        let connected = keywords.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in PQconnectdbParams(k.baseAddress, v.baseAddress, 1) }
        }
        guard let handle = connected else {
            throw PostgresError(sqlState: nil, message: "out of memory", operation: "connect to \(displayName)", connecting: true)
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(handle))
            PQfinish(handle)
            throw PostgresError(sqlState: nil, message: message, operation: "connect to \(displayName)", connecting: true)
        }
        self.handle = handle
        socketToCut = dup(PQsocket(handle))
        Watchdog.shared.watch(self)
        // Notices (e.g. "relation already exists, skipping") are not errors; libpq would print them.
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
    }

    deinit {
        Watchdog.shared.unwatch(self)
        PQfinish(handle)
        if socketToCut >= 0 { close(socketToCut) }
    }

    /// Whether the connection still works as far as libpq knows (it learns of a lost server only
    /// when a call fails), and was not cut for taking too long.
    public var isUsable: Bool { PQstatus(handle) == CONNECTION_OK && !brokenPipeline && !watchLock.withLock { wasCut } }

    /// Runs one round trip under ``answerLimit``: past it, the socket is shut down, which wakes
    /// libpq's wait with the connection lost, and `body`'s failure is reported as the cut.
    private func bounded<R>(_ operation: @autoclosure () -> String, _ body: () throws(PostgresError) -> R) throws(PostgresError) -> R {
        guard let limit = answerLimit else { return try body() }
        let nanoseconds = Int(clamping: limit.components.seconds) &* 1_000_000_000 &+ Int(limit.components.attoseconds / 1_000_000_000)
        let due = DispatchTime.now() + .nanoseconds(nanoseconds)
        watchLock.withLock { answerDue = due }
        defer { watchLock.withLock { answerDue = nil } }
        do {
            return try body()
        } catch {
            guard watchLock.withLock({ wasCut }) else { throw error }
            throw PostgresError(sqlState: nil, message: "no answer within \(limit); the connection was closed", operation: operation(), wentUnanswered: true)
        }
    }

    fileprivate func cutIfOverdue() {
        watchLock.withLock {
            guard let due = answerDue, DispatchTime.now() >= due, !wasCut else { return }
            wasCut = true
            _ = shutdown(socketToCut, Int32(SHUT_RDWR))
        }
    }

    /// Whether the connection is outside any transaction, as a connection handed on must be.
    public var isIdle: Bool { PQtransactionStatus(handle) == PQTRANS_IDLE }

    /// Runs one statement with `parameters` ($1, $2, …), sent in binary with their types.
    /// - Returns: its rows, in binary format (empty for a statement that returns none).
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) -> PostgresRows {
        try bounded(Self.summary(sql)) { () throws(PostgresError) in
            let result = Self.withBound(parameters) { count, types, values, lengths, formats in
                PQexecParams(handle, sql, count, types, values, lengths, formats, 1)
            }
            return try rows(of: result, sql)
        }
    }

    /// One statement of a ``pipeline(_:)``.
    public struct Query: Sendable {
        public let sql: String
        public let parameters: [PostgresValue]
        /// Whether the connection keeps the statement prepared, parsed and planned once, for every
        /// later run of the same text: for statements a writer sends on every batch.
        public let isPrepared: Bool

        public init(_ sql: String, _ parameters: [PostgresValue] = []) {
            self.init(sql, parameters, prepared: false)
        }

        private init(_ sql: String, _ parameters: [PostgresValue], prepared: Bool) {
            self.sql = sql
            self.parameters = parameters
            isPrepared = prepared
        }

        /// A statement prepared on its first run on a connection; its parameters' types must be
        /// the same on every run. Only for statements whose plan does not depend on what the
        /// tables hold (inserts): after a few runs the server keeps one generic plan, made from
        /// the statistics of that moment, and a read's could be a scan that grows with its table.
        public static func prepared(_ sql: String, _ parameters: [PostgresValue] = []) -> Query {
            Query(sql, parameters, prepared: true)
        }
    }

    /// The statements this connection has prepared, by their text: the name and the parameter
    /// types each was prepared with.
    private var preparedNames: [String: (name: String, types: [UInt32])] = [:]
    private var preparedCount = 0

    /// Runs `queries` in order in one round trip (libpq's pipeline mode): all are sent, then every
    /// result is read. A query that fails skips those after it, and its error is thrown once every
    /// result is in. Meant for statements inside an explicit transaction (`BEGIN` among them or
    /// before them): there they run as if sent one by one, and a failure leaves the transaction
    /// failed, for the caller to roll back, as a failed ``query(_:_:)`` does. Without one, all of
    /// them form one implicit transaction, kept only if every one succeeds.
    @discardableResult
    public func pipeline(_ queries: [Query]) throws(PostgresError) -> [PostgresRows] {
        try bounded("a pipeline of \(queries.count) statements") { () throws(PostgresError) in try runPipeline(queries) }
    }

    private func runPipeline(_ queries: [Query]) throws(PostgresError) -> [PostgresRows] {
        guard PQenterPipelineMode(handle) == 1 else { throw failure("enter pipeline mode") }
        // What was sent, in order: each query's run, after its preparation when it needs one.
        enum Sent { case prepare(name: String, query: Int), run(query: Int) }
        var sent: [Sent] = []
        // A send that fails is reported with libpq's message of that moment (the sync after it
        // may replace the message).
        var sendFailure: PostgresError?
        var preparing: [String: (name: String, types: [UInt32])] = [:]
        sending: for (index, query) in queries.enumerated() {
            var name: String?
            if query.isPrepared {
                let types = query.parameters.map(\.typeOID)
                if let known = preparedNames[query.sql] ?? preparing[query.sql] {
                    precondition(known.types == types, "a prepared statement is run with the parameter types it was prepared with")
                    name = known.name
                } else {
                    let fresh = "upload_coordinator_\(preparedCount)"
                    preparedCount += 1
                    guard PQsendPrepare(handle, fresh, query.sql, Int32(types.count), types) == 1 else {
                        sendFailure = failure(Self.summary(query.sql))
                        break sending
                    }
                    sent.append(.prepare(name: fresh, query: index))
                    preparing[query.sql] = (fresh, types)
                    name = fresh
                }
            }
            let accepted = Self.withBound(query.parameters) { count, types, values, lengths, formats in
                if let name { PQsendQueryPrepared(handle, name, count, values, lengths, formats, 1) }
                else { PQsendQueryParams(handle, query.sql, count, types, values, lengths, formats, 1) }
            }
            guard accepted == 1 else {
                sendFailure = failure(Self.summary(query.sql))
                break
            }
            sent.append(.run(query: index))
        }
        // Even after a failed send, what was sent is synced and read, so the connection is left
        // out of pipeline mode (or, if the server is gone, unusable).
        let synced = PQpipelineSync(handle) == 1
        var results: [PostgresRows] = []
        var firstError = sendFailure
        for item in synced ? sent : [] {
            let index = switch item { case .prepare(_, let query), .run(let query): query }
            // No result where one is due: the connection failed; what follows would not come either.
            guard let result = PQgetResult(handle) else {
                if firstError == nil { firstError = failure(Self.summary(queries[index].sql)) }
                break
            }
            // Each query's results end with a null one (none of ours returns more than one).
            while let extra = PQgetResult(handle) { PQclear(extra) }
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                PQclear(result)  // skipped after the failure already recorded
                continue
            }
            do {
                let rows = try rows(of: result, queries[index].sql)
                switch item {
                case .prepare(let name, _): preparedNames[queries[index].sql] = (name, queries[index].parameters.map(\.typeOID))
                case .run: results.append(rows)
                }
            } catch { if firstError == nil { firstError = error } }
        }
        // The sync's own result ends the pipeline.
        if synced, let sync = PQgetResult(handle) {
            if PQresultStatus(sync) != PGRES_PIPELINE_SYNC { brokenPipeline = true }
            PQclear(sync)
        }
        if PQexitPipelineMode(handle) != 1 { brokenPipeline = true }
        if firstError == nil, brokenPipeline || results.count != queries.count {
            brokenPipeline = true
            firstError = failure("end a pipeline of \(queries.count) statements with \(results.count) results")
        }
        if let firstError { throw firstError }
        return results
    }

    /// Set when a pipeline could not be ended: the connection's state is unknown, so it is not used again.
    private var brokenPipeline = false

    private func failure(_ operation: String) -> PostgresError {
        PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(handle)), operation: operation)
    }

    /// Calls `body` with `parameters` laid out as libpq takes them: binary, with their types.
    private static func withBound<R>(
        _ parameters: [PostgresValue],
        _ body: (Int32, [UInt32], [UnsafePointer<CChar>?], [Int32], [Int32]) -> R
    ) -> R {
        var storage: [UInt8] = []
        var offsets: [Int] = [], lengths: [Int32] = [], formats: [Int32] = []
        for parameter in parameters {
            offsets.append(storage.count)
            let bytes = parameter.encoded
            storage += bytes ?? []
            lengths.append(Int32(bytes?.count ?? 0))
            formats.append(1)
        }
        storage.append(0)  // so that the base address exists even when every value is empty
        let types = parameters.map(\.typeOID)
        return storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            let values: [UnsafePointer<CChar>?] = parameters.indices.map { parameters[$0] == .null ? nil : base + offsets[$0] }
            return body(Int32(parameters.count), types, values, lengths, formats)
        }
    }

    /// Runs `script`, which may hold several statements and no parameters (a migration's DDL).
    public func execute(_ script: String) throws(PostgresError) {
        try bounded(Self.summary(script)) { () throws(PostgresError) in _ = try rows(of: PQexec(handle, script), script) }
    }

    /// Runs `body` in a transaction, `BEGIN` with `options` (e.g. `ISOLATION LEVEL REPEATABLE READ
    /// READ ONLY`): committed when it returns, rolled back when it throws. A commit is durable when
    /// it returns, under PostgreSQL's default `synchronous_commit`.
    public func transaction<T>(_ options: String = "", _ body: () throws -> T) throws -> T {
        let value: T
        do {
            try execute(options.isEmpty ? "BEGIN" : "BEGIN \(options)")
            value = try body()
        } catch {
            // A lost connection has rolled back by itself; the caller's error is the one to report.
            _ = try? execute("ROLLBACK")
            throw error
        }
        try execute("COMMIT")
        return value
    }

    /// A `NOTIFY` this connection received after `LISTEN`.
    public struct Notification: Sendable {
        public let channel: String
        public let payload: String
    }

    /// Waits up to `timeout` for notifications on the channels this connection listens to.
    /// - Returns: those received, oldest first (empty when `timeout` passed).
    public func notifications(waitingUpTo timeout: Duration) throws(PostgresError) -> [Notification] {
        var received = takeNotifications()
        guard received.isEmpty else { return received }
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        _ = poll(&descriptor, 1, milliseconds)
        guard PQconsumeInput(handle) == 1 else {
            throw PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(handle)), operation: "wait for notifications")
        }
        received = takeNotifications()
        return received
    }

    private func takeNotifications() -> [Notification] {
        var received: [Notification] = []
        while let notify = PQnotifies(handle) {
            received.append(Notification(channel: String(cString: notify.pointee.relname), payload: String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    private func rows(of result: OpaquePointer?, _ sql: String) throws(PostgresError) -> PostgresRows {
        guard let result else {
            throw PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(handle)), operation: Self.summary(sql))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PostgresRows(rows: [])
        case PGRES_TUPLES_OK:
            let count = Int(PQntuples(result)), columns = Int(PQnfields(result))
            var rows: [[[UInt8]?]] = []
            rows.reserveCapacity(count)
            for row in 0..<Int32(count) {
                rows.append((0..<Int32(columns)).map { column in
                    guard PQgetisnull(result, row, column) == 0 else { return nil }
                    let length = Int(PQgetlength(result, row, column))
                    guard length > 0, let value = PQgetvalue(result, row, column) else { return [] }
                    return Array(UnsafeRawBufferPointer(start: value, count: length))
                })
            }
            return PostgresRows(rows: rows)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw PostgresError(sqlState: state, message: String(cString: PQresultErrorMessage(result)), operation: Self.summary(sql))
        }
    }

    /// The start of a statement, for an error's operation.
    private static func summary(_ sql: String) -> String {
        let words = sql.split(whereSeparator: \.isWhitespace).prefix(6).joined(separator: " ")
        return words.count < 60 ? words : String(words.prefix(60)) + "…"
    }

    /// Whether libpq can read `url` as a connection string.
    static func isReadable(_ url: String) -> Bool {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            if let error { PQfreemem(error) }
            return false
        }
        PQconninfoFree(options)
        return true
    }

    /// `url` as libpq reads it (a URI or `key=value` pairs), for logs and errors: each setting it
    /// gives, as `key=value`, those libpq marks secret (`password`, `sslpassword`) as `***`.
    public static func withoutPassword(_ url: String) -> String {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            if let error { PQfreemem(error) }
            return "(a connection string libpq cannot read)"
        }
        defer { PQconninfoFree(options) }
        var shown: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                let name = String(cString: keyword)
                // libpq marks its secrets `*`; by name too, and when unmarked, so that it fails closed.
                let secret = option.pointee.dispchar.map { String(cString: $0) == "*" } ?? true || name.hasSuffix("password")
                shown.append(name + "=" + (secret ? "***" : String(cString: value)))
            }
            option += 1
        }
        return shown.joined(separator: " ")
    }
}

/// Cuts the connections whose round trip is past its answer limit: one timer for the process,
/// four times a second, so that a round trip only notes when its answer is due (a lock and a
/// clock read). Rearming a timer for each round trip cost a single caller's writes about 12 %
/// (BENCHMARKS.md, twenty-second session). A cut comes about a quarter of a second late at most
/// (the tick, its leeway, and the queue's own delay).
private final class Watchdog: @unchecked Sendable {
    static let shared = Watchdog()
    static let tick = DispatchTimeInterval.milliseconds(250)

    private struct Watched { weak var connection: PostgresConnection? }
    private let lock = NSLock()
    private var watched: [ObjectIdentifier: Watched] = [:]
    private let timer: any DispatchSourceTimer

    private init() {
        timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + Self.tick, repeating: Self.tick, leeway: .milliseconds(50))
        timer.setEventHandler { [unowned self] in
            let connections = lock.withLock { watched.values.compactMap(\.connection) }
            for connection in connections { connection.cutIfOverdue() }
            // A connection whose last reference this was is closed elsewhere: its PQfinish may
            // block, and must not delay the next tick's cuts.
            DispatchQueue.global().async { withExtendedLifetime(connections) {} }
        }
        timer.activate()
    }

    func watch(_ connection: PostgresConnection) { lock.withLock { watched[ObjectIdentifier(connection)] = Watched(connection: connection) } }
    func unwatch(_ connection: PostgresConnection) { lock.withLock { _ = watched.removeValue(forKey: ObjectIdentifier(connection)) } }
}
