/// Ordered, permanent schema steps for one ``Environment``, shaped after GRDB's `DatabaseMigrator`.
///
/// Each migration runs in the same write transaction that records its id in the reserved database
/// `__migrations`, so a migration counts as applied exactly when it is recorded. Ids are permanent:
/// never rename, reorder or edit a shipped migration; add a new one.
public struct StoreMigrator: Sendable {
    public typealias Body = @Sendable (Transaction) throws -> Void

    public static let migrationsDatabaseName = "__migrations"

    public private(set) var identifiers: [String] = []
    private var bodies: [Body] = []

    public init() {}

    /// Appends a migration. Registering an id twice is a programmer error.
    public mutating func registerMigration(_ identifier: String, _ body: @escaping Body) {
        precondition(!identifiers.contains(identifier), "migration \(identifier) registered twice")
        identifiers.append(identifier)
        bodies.append(body)
    }

    /// The ids recorded in the store, in the order they were applied.
    public func appliedIdentifiers(_ txn: Transaction) throws -> [String] {
        guard let db = try txn.openDatabase(Self.migrationsDatabaseName) else { return [] }
        var applied: [(order: UInt32, id: String)] = []
        try txn.scan(db) { key, value in
            guard value.count == 4 else {
                throw MigrationError.corruptRecord(String(decoding: key, as: UTF8.self))
            }
            let order = value.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            applied.append((order, String(decoding: key, as: UTF8.self)))
            return true
        }
        return applied.sorted { $0.order < $1.order }.map(\.id)
    }

    /// Where the store stands against this migrator.
    /// - Throws: ``MigrationError/foreign(_:)`` for an environment another program made: one
    ///   that records no migration but holds a database (a store's first migration and its record
    ///   commit together), so that none of it is taken for a store to migrate.
    public func status(_ txn: Transaction) throws -> MigrationStatus {
        let applied = try appliedIdentifiers(txn)
        if applied.isEmpty, let name = try txn.firstKey(txn.mainDatabase()) {
            throw MigrationError.foreign(String(decoding: name, as: UTF8.self))
        }
        let unknown = applied.filter { !identifiers.contains($0) }
        if !unknown.isEmpty { return .superseded(unknown: unknown) }
        let pending = identifiers.filter { !applied.contains($0) }
        return pending.isEmpty ? .current : .pending(pending)
    }

    /// Applies every pending migration up to and including `last` (all of them when `nil`), each in
    /// its own write transaction. - Returns: the ids applied by this call.
    /// - Throws: ``MigrationError/superseded(_:)`` when the store knows migrations this binary does not.
    @discardableResult
    public func migrate(_ environment: Environment, upTo last: String? = nil) throws -> [String] {
        if let last { precondition(identifiers.contains(last), "unknown migration \(last)") }
        var appliedNow: [String] = []
        for (index, identifier) in identifiers.enumerated() {
            // A migration that copies a table may need more map than a store opened at its size
            // has (a store past the initial map reopens with it exactly full): grow, and again.
            let applied: Bool = try environment.writeGrowingTheMap { txn in
                let status = try status(txn)
                if case .superseded(let unknown) = status { throw MigrationError.superseded(unknown) }
                guard try !appliedIdentifiers(txn).contains(identifier) else { return false }
                try bodies[index](txn)
                let db = try txn.openDatabase(Self.migrationsDatabaseName, create: true)!
                let order = UInt32(index)
                try txn.put(db, Array(identifier.utf8), [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: order >> $0) })
                return true
            }
            if applied { appliedNow.append(identifier) }
            if identifier == last { break }
        }
        return appliedNow
    }
}

public enum MigrationStatus: Equatable, Sendable {
    case current
    case pending([String])
    /// The store has migrations this binary does not know: a newer binary wrote it.
    case superseded(unknown: [String])

    /// Why a binary that needs the store current cannot use it; `nil` when it is current.
    public var refusal: MigrationError? {
        switch self {
        case .current: nil
        case .pending(let ids): .pending(ids)
        case .superseded(let unknown): .superseded(unknown)
        }
    }

    /// Why a binary that only reads the store cannot read it: as ``refusal``, but migrations that
    /// only mark it (`markingMigrations`: they change nothing a reader reads) may still be pending.
    public func refusalToRead(toleratingPending markingMigrations: Set<String>) -> MigrationError? {
        if case .pending(let ids) = self, ids.allSatisfy(markingMigrations.contains) { return nil }
        return refusal
    }
}

public enum MigrationError: Error, CustomStringConvertible, Sendable {
    case superseded([String])
    case pending([String])
    case corruptRecord(String)
    /// An LMDB environment of another program, holding the database (or key) named.
    case foreign(String)
    /// A PostgreSQL database of another program, holding the tables named.
    case foreignDatabase(String)

    public var description: String {
        switch self {
        case .superseded(let ids):
            "this store was written by a newer upload-coordinator (it has migration \(ids.joined(separator: ", ")) that this binary does not know); use that version or newer"
        case .pending(let ids):
            "this store needs migrations \(ids.joined(separator: ", ")); run `upload-coordinator migrate` on it (with its --data-dir, or its --database-url), once every process still serving it has stopped"
        case .corruptRecord(let id):
            "the migration record for \(id) is corrupt"
        case .foreign(let name):
            "this folder's data.mdb is an LMDB store of another program (it holds '\(name)' and no upload-coordinator migration); give an empty or new folder"
        case .foreignDatabase(let tables):
            "this database holds tables of another program (\(tables)) and no upload-coordinator migration; give upload-coordinator a database of its own (createdb)"
        }
    }
}
