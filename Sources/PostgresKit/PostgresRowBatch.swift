/// Rows to insert, sent as one array per column:
/// `INSERT INTO t (a, b) SELECT * FROM unnest($1::int8[], $2::bytea[])`. The statement's text is
/// the same for any number of rows, so a connection prepares it once and the server parses and
/// plans it once; a multi-row `VALUES` list was parsed and planned afresh for every batch, which
/// took a third of the server's time for a write batch.
public struct PostgresRowBatch {
    public let table: String
    public let columns: [(name: String, type: PostgresType)]
    /// What follows the `SELECT` (`ON CONFLICT …`), or nothing.
    public let onConflict: String
    /// The arrays of the statements closed so far, and of the one being filled.
    private var closed: [[PostgresArray]] = []
    private var filling: [PostgresArray]
    /// A statement is closed at this many rows, or once its values hold this many bytes, so that
    /// no parameter grows without bound: a message to the server must stay under 1 GB, and rows
    /// of large values (4 MiB manifests) reach that long before 10,000 of them.
    public static let rowsPerStatement = 10_000
    public static let bytesPerStatement = 64 << 20

    public init(into table: String, columns: [(name: String, type: PostgresType)], onConflict: String = "") {
        self.table = table
        self.columns = columns
        self.onConflict = onConflict
        filling = columns.map { PostgresArray(of: $0.type) }
    }

    /// Appends a row: one value per column, of the column's type.
    public mutating func append(_ row: PostgresValue...) {
        precondition(row.count == columns.count, "a row of \(table) has \(columns.count) values")
        if Int(filling[0].count) == Self.rowsPerStatement || filling.reduce(0, { $0 + $1.byteCount }) >= Self.bytesPerStatement {
            closed.append(filling)
            filling = columns.map { PostgresArray(of: $0.type) }
        }
        for (column, value) in row.enumerated() { filling[column].append(value) }
    }

    /// The statement's text, the same for every batch of this table and these columns.
    public var sql: String {
        let arrays = columns.enumerated().map { "$\($0.offset + 1)::\($0.element.type.name)[]" }.joined(separator: ", ")
        let insert = "INSERT INTO \(table) (\(columns.map(\.name).joined(separator: ", "))) SELECT * FROM unnest(\(arrays))"
        return onConflict.isEmpty ? insert : insert + " " + onConflict
    }

    /// The prepared statements that insert the rows, none when there are none, for
    /// ``PostgresConnection/pipeline(_:)``.
    public var queries: [PostgresConnection.Query] {
        (closed + (filling[0].count > 0 ? [filling] : [])).map { .prepared(sql, $0.map { .array($0) }) }
    }

    /// Inserts the rows, in one round trip.
    public func run(on connection: PostgresConnection) throws(PostgresError) {
        let queries = self.queries
        if !queries.isEmpty { try connection.pipeline(queries) }
    }

    /// Inserts the rows of the statements closed so far and forgets them, keeping the one being
    /// filled: for a writer of more rows than it should hold at once (a rebuild of every table),
    /// which then holds at most a statement's worth. ``run(on:)`` sends the rest.
    public mutating func runClosed(on connection: PostgresConnection) throws(PostgresError) {
        guard !closed.isEmpty else { return }
        try connection.pipeline(closed.map { .prepared(sql, $0.map { .array($0) }) })
        closed.removeAll()
    }
}
