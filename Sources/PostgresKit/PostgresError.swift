import Foundation

/// A failed PostgreSQL call: the server's SQLSTATE when it answered, and its message.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// The five-character SQLSTATE, `nil` when no server answered (the connection is gone).
    public let sqlState: String?
    public let message: String
    /// What the wrapper was doing, e.g. `connect` or the first words of a statement.
    public let operation: String
    /// The server gave no answer within the connection's ``PostgresConnection/answerLimit``, and
    /// the connection was cut: a lost connection (``isConnectionFailure``) not worth trying again
    /// at once, since the server is there but not answering.
    public let wentUnanswered: Bool
    /// No connection was made (refused, or no answer within `connect_timeout`): trying again at
    /// once meets the same server.
    public let connecting: Bool

    public init(sqlState: String?, message: String, operation: String, wentUnanswered: Bool = false, connecting: Bool = false) {
        self.sqlState = sqlState
        self.message = message
        self.operation = operation
        self.wentUnanswered = wentUnanswered
        self.connecting = connecting
    }

    /// Whether the statement never reached a working server, or the server went away under it
    /// (class 08, a shutdown's 57P01..57P03, a session ended as idle 57P05, or no SQLSTATE at
    /// all): the caller may retry on a new connection, and nothing of an uncommitted transaction
    /// was kept.
    public var isConnectionFailure: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03", "57P05"].contains(sqlState)
    }

    /// Whether the connection should be given up, not used again: it failed
    /// (``isConnectionFailure``), or its session is read-only (25006). A session takes
    /// `default_transaction_read_only` as it starts, and a standby's stays read-only: only a new
    /// connection sees the setting put back, or (with `target_session_attrs=read-write`) finds the
    /// new primary. Kept, it refused every write until the node restarted.
    public var endsTheSession: Bool { isConnectionFailure || sqlState == "25006" }

    /// The SQLSTATE this wrapper gives a result it cannot read as asked (invalid_binary_representation):
    /// the server answered, so the connection is fine.
    public static let unexpectedResult = "22P03"

    /// A unique or primary key was violated (23505).
    public var isUniqueViolation: Bool { sqlState == "23505" }

    public var description: String {
        "\(operation): \(message.trimmingCharacters(in: .whitespacesAndNewlines))\(sqlState.map { " (SQLSTATE \($0))" } ?? "")"
    }
}
