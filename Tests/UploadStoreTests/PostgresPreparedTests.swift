import PostgresKit
import Testing
import UploadTesting

/// The writer's statements carry a batch's rows as arrays (``PostgresArray``, ``PostgresRowBatch``)
/// and are prepared once per connection, so their text and plan do not change with the batch.
struct PostgresPreparedTests {
    @Test func arrays_reachTheServerElementForElement_eachType_emptyToo() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let integers: [Int64] = [0, -1, 7, .max, .min]
        let rows = try connection.query(
            "SELECT (SELECT array_agg(x ORDER BY o) FROM unnest($1::int8[]) WITH ORDINALITY AS u(x, o))::text, "
                + "(SELECT string_agg(encode(x, 'hex'), ',' ORDER BY o) FROM unnest($2::bytea[]) WITH ORDINALITY AS u(x, o)), "
                + "(SELECT string_agg(x, ',' ORDER BY o) FROM unnest($3::text[]) WITH ORDINALITY AS u(x, o)), "
                + "(SELECT array_agg(x ORDER BY o) FROM unnest($4::int2[]) WITH ORDINALITY AS u(x, o))::text, "
                + "cardinality($5::bytea[]), array_lower($1::int8[], 1), $6::int4[]::text, $7::bool[]::text",
            [
                .array(PostgresArray(of: .int8, integers.map { .int64($0) })),
                .array(PostgresArray(of: .bytea, [.bytes([0xDE, 0xAD]), .bytes([]), .bytes([0x00])])),
                .array(PostgresArray(of: .text, [.text("é"), .text("b")])),
                .array(PostgresArray(of: .int2, [.int16(63), .int16(-2)])),
                .array(PostgresArray(of: .bytea)),
                .array(PostgresArray(of: .int4, [.int32(-5), .int32(.max)])),
                .array(PostgresArray(of: .bool, [.bool(true), .bool(false)])),
            ])
        #expect(rows.text(0, 0) == "{0,-1,7,9223372036854775807,-9223372036854775808}")
        #expect(rows.text(0, 1) == "dead,,00", "an empty element is kept, not taken for NULL")
        #expect(rows.text(0, 2) == "é,b")
        #expect(rows.text(0, 3) == "{63,-2}")
        #expect(try rows.int64(0, 4) == 0)
        #expect(try rows.int64(0, 5) == 1, "arrays count from 1, as PostgreSQL's own do")
        #expect(rows.text(0, 6) == "{-5,2147483647}")
        #expect(rows.text(0, 7) == "{t,f}")
    }

    @Test func aPreparedStatement_isPreparedOnceAConnection() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let double = PostgresConnection.Query.prepared("SELECT $1::int8 * 2", [.int64(21)])
        let first = try connection.pipeline([double, double])
        let second = try connection.pipeline([.prepared(double.sql, [.int64(5)])])
        #expect(try first.map { try $0.int64(0, 0) } == [42, 42])
        #expect(try second[0].int64(0, 0) == 10)
        #expect(try connection.query("SELECT count(*) FROM pg_prepared_statements").int64(0, 0) == 1)
    }

    @Test func aPreparationSkippedByAnEarlierFailure_isMadeOnTheNextRun() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let prepared = PostgresConnection.Query.prepared("SELECT $1::int8 + 1", [.int64(1)])
        #expect(throws: PostgresError.self) { try connection.pipeline([.init("BEGIN"), .init("SELECT 1 / 0"), prepared, .init("COMMIT")]) }
        try connection.execute("ROLLBACK")
        // Taken as prepared, it would be run by a name the server never heard of.
        #expect(try connection.pipeline([prepared])[0].int64(0, 0) == 2)
    }

    @Test func aStatementPreparedInATransactionRolledBack_staysPrepared() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let prepared = PostgresConnection.Query.prepared("SELECT $1::int8 * 3", [.int64(2)])
        #expect(throws: PostgresError.self) { try connection.pipeline([.init("BEGIN"), prepared, .init("SELECT 1 / 0"), .init("COMMIT")]) }
        try connection.execute("ROLLBACK")
        #expect(try connection.pipeline([prepared])[0].int64(0, 0) == 6)
        #expect(try connection.query("SELECT count(*) FROM pg_prepared_statements").int64(0, 0) == 1, "not prepared a second time")
    }

    @Test func aStatementThatFailsToPrepare_failsAgainWithItsOwnError_notAMissingName() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let broken = PostgresConnection.Query.prepared("SELECT * FROM no_such_table WHERE k = $1", [.int64(1)])
        for _ in 0..<2 {
            var thrown: PostgresError?
            do { try connection.pipeline([broken]) } catch { thrown = error }
            #expect(thrown?.sqlState == "42P01", "the table's absence, each time")
        }
        try connection.execute("CREATE TABLE no_such_table (k bigint)")
        #expect(try connection.pipeline([broken])[0].isEmpty)
    }

    @Test func aRowBatch_insertsEveryRow_acrossStatementsPastItsLimit() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE t (k bigint PRIMARY KEY, v bytea NOT NULL, n smallint NOT NULL)")
        var rows = PostgresRowBatch(into: "t", columns: [("k", .int8), ("v", .bytea), ("n", .int2)])
        #expect(rows.queries.isEmpty)
        let count = 2 * PostgresRowBatch.rowsPerStatement + 3
        for k in 1...count { rows.append(.int64(Int64(k)), .bytes([UInt8(k % 256)]), .int16(Int16(k % 64))) }
        #expect(rows.queries.count == 3)
        try rows.run(on: connection)
        let summary = try connection.query("SELECT count(*), sum(k)::int8, sum(get_byte(v, 0)), sum(n) FROM t")
        #expect(try summary.int64(0, 0) == Int64(count))
        #expect(try summary.int64(0, 1) == Int64(count * (count + 1) / 2))
        #expect(try summary.int64(0, 2) == Int64((1...count).reduce(0) { $0 + $1 % 256 }))
        #expect(try summary.int64(0, 3) == Int64((1...count).reduce(0) { $0 + $1 % 64 }))
    }

    /// Large values close a statement before its row count does: each message to the server must
    /// stay under PostgreSQL's 1 GB, and 10,000 rows of 4 MiB manifests are 40 GB.
    @Test func aRowBatch_ofLargeValues_closesAStatementAtItsBytes() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE t (k bigint PRIMARY KEY, v bytea NOT NULL)")
        var rows = PostgresRowBatch(into: "t", columns: [("k", .int8), ("v", .bytea)])
        let value = 1 << 20, count = PostgresRowBatch.bytesPerStatement / value + 6
        for k in 1...count { rows.append(.int64(Int64(k)), .bytes([UInt8](repeating: UInt8(k % 256), count: value))) }
        #expect(rows.queries.count == 2, "closed at \(PostgresRowBatch.bytesPerStatement) bytes, not at \(PostgresRowBatch.rowsPerStatement) rows")
        try rows.run(on: connection)
        let summary = try connection.query("SELECT count(*), sum(octet_length(v))::int8, sum(get_byte(v, \(value - 1)))::int8 FROM t")
        #expect(try summary.int64(0, 0) == Int64(count))
        #expect(try summary.int64(0, 1) == Int64(count * value))
        #expect(try summary.int64(0, 2) == Int64((1...count).reduce(0) { $0 + $1 % 256 }))
    }

    @Test func anUpsertingRowBatch_replacesWhatItConflictsWith() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE t (k text PRIMARY KEY, v bytea NOT NULL)")
        let upsert = { PostgresRowBatch(into: "t", columns: [("k", .text), ("v", .bytea)], onConflict: "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v") }
        var first = upsert(), second = upsert()
        first.append(.text("a"), .bytes([1]))
        first.append(.text("b"), .bytes([2]))
        second.append(.text("b"), .bytes([3]))
        try first.run(on: connection)
        try second.run(on: connection)
        let rows = try connection.query("SELECT k, v FROM t ORDER BY k")
        #expect(rows.count == 2)
        #expect(rows.text(0, 0) == "a" && rows.bytes(0, 1) == [1])
        #expect(rows.text(1, 0) == "b" && rows.bytes(1, 1) == [3])
    }
}
