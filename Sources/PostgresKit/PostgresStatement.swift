/// Several writes sent as one statement, in one round trip: each a data-modifying part of a `WITH`
/// (`WITH w1 AS (INSERT …), w2 AS (DELETE …) SELECT …`). PostgreSQL runs every part whether or not
/// the final `SELECT` reads it, all on one snapshot, so the parts must not touch the same rows.
/// Past PostgreSQL's 65,535 parameters a statement is closed as it stands and the next begins; all
/// are sent together, in one round trip, by ``run(finally:then:)``.
public struct PostgresStatement {
    private let connection: PostgresConnection
    private var parts: [String] = []
    private var parameters: [PostgresValue] = []
    /// The statements closed so far, sent with the last.
    private var closed: [PostgresConnection.Query] = []
    /// A statement is closed past this many parameters, below the protocol's limit.
    static let parameterLimit = 60_000

    public init(_ connection: PostgresConnection) { self.connection = connection }

    /// The placeholder of `value` in this statement.
    public mutating func parameter(_ value: PostgresValue) -> String {
        parameters.append(value)
        return "$\(parameters.count)"
    }

    /// An `INSERT` of `rows`, each one value per column, with `onConflict` after it (or nothing).
    public mutating func insert(into table: String, columns: [String], rows: [[PostgresValue]], onConflict: String = "") {
        var start = 0
        let perStatement = max(1, Self.parameterLimit / columns.count)
        while start < rows.count {
            if parameters.count + columns.count > Self.parameterLimit { close(finally: "SELECT 1") }
            let room = min(perStatement, (Self.parameterLimit - parameters.count) / columns.count)
            let chunk = rows[start..<min(rows.count, start + room)]
            let values = chunk.map { row in "(" + row.map { parameter($0) }.joined(separator: ", ") + ")" }.joined(separator: ", ")
            parts.append("INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES \(values)\(onConflict.isEmpty ? "" : " " + onConflict)")
            start += chunk.count
        }
    }

    /// A part written by the caller, with placeholders from ``parameter(_:)``; `count` of them.
    public mutating func add(_ sql: (inout PostgresStatement) -> String, parameters count: Int) {
        if parameters.count + count > Self.parameterLimit { close(finally: "SELECT 1") }
        parts.append(sql(&self))
    }

    /// Sends every statement, the last with `finally` as its own `SELECT` (its placeholders from
    /// ``parameter(_:)`` too), and `then` after them (`COMMIT`, say), in one round trip.
    public mutating func run(finally: (inout PostgresStatement) -> String, then: [String] = []) throws {
        let last = finally(&self)
        close(finally: last)
        let queries = closed + then.map { PostgresConnection.Query($0) }
        closed = []
        try connection.pipeline(queries)
    }

    private mutating func close(finally: String) {
        let with = parts.enumerated().map { "w\($0.offset) AS (\($0.element))" }.joined(separator: ", ")
        closed.append(PostgresConnection.Query((parts.isEmpty ? "" : "WITH \(with) ") + finally, parameters))
        parts = []
        parameters = []
    }
}
