import Logging
import PostgresKit
import UploadCore

/// Rebuilds the projection tables of a PostgreSQL store from its log when their layout version is
/// not this binary's (``Projector/version``) or they do not reflect the whole log: the fold replay
/// runs, in memory, then every table written afresh, in one transaction under the append lock, so
/// no node decides from half-built tables.
enum PostgresProjectionRebuild {
    /// - Parameter changingLayout: as ``ProjectionCatchUp/run(_:_:_:changingLayout:)``'s.
    /// - Returns: the layout of the tables it rebuilt to this binary's, if it did.
    @discardableResult
    static func runIfNeeded(_ connection: PostgresConnection, changingLayout: Bool, logger: Logger) throws -> UInt32? {
        // The common case, checked without the append lock (which every node's writes wait for):
        // the tables are current.
        let current = try connection.transaction("ISOLATION LEVEL REPEATABLE READ READ ONLY") {
            try PostgresProjectionState.read(connection) == PostgresProjectionState(position: try PostgresLog.lastPosition(connection) ?? 0, version: Projector.version)
        }
        guard !current else { return nil }
        return try PostgresLog.underAppendLock(connection) { () throws -> UInt32? in
            let tail = try PostgresLog.lastPosition(connection) ?? 0
            let state = try PostgresProjectionState.read(connection)
            guard state.version != Projector.version || state.position != tail else { return nil }
            if state.position > tail {
                throw ProjectionCatchUp.logWentBack(viewsAt: state.position, tail: tail, wayOut: "run `DELETE FROM projection_state WHERE name IN ('position', 'version')` in the database: the next open rebuilds the projections from the log")
            }
            if let version = state.version, version != Projector.version { try ProjectionCatchUp.refuseLayout(version, changing: changingLayout) }
            if tail > 0 { logger.notice("rebuilding the projections from the log", metadata: ["event.last": "\(tail)"]) }
            var projections = InMemoryProjectionState()
            var position: UInt64 = 0
            while position < tail {
                let page = try PostgresLog.records(connection, from: position + 1, count: 10_000, byteBudget: PostgresLog.pageBytes)
                guard !page.isEmpty else { break }
                for record in page {
                    position += 1
                    try Projector.apply(try EventLog.decode(position: position, record[...]), to: &projections)
                }
            }
            guard position == tail else { throw StoreError(.corrupt, "the event log has no event at position \(position + 1), before its tail at \(tail)") }
            try connection.query("DELETE FROM projection_entries")
            // Sent a statement at a time as they fill, so that the rows are not held whole beside
            // the state they come from.
            var entries = PostgresTables.entryRows()
            for table in ProjectionTable.allCases {
                try projections.forEachEntry(table) { key, value in
                    entries.append(.text(table.rawValue), .bytes(Array(key)), .bytes(Array(value)))
                    try entries.runClosed(on: connection)
                }
            }
            try entries.run(on: connection)
            try PostgresProjectionState(position: position, version: Projector.version).rows.run(on: connection)
            return ProjectionCatchUp.replacedLayout(state.version)
        }
    }
}
