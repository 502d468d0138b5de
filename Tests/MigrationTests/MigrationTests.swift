import Foundation
import LMDBKit
import LogHashing
import Testing
import UploadMigrations

// MARK: - Helpers

/// A fresh directory under the system temporary directory, removed when `body` returns.
func withScratchDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("migration-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// A fresh LMDB environment in a scratch directory, closed before the directory is removed.
func withEnvironment<T>(_ body: (Environment) throws -> T) throws -> T {
    try withScratchDirectory { path in try body(Environment(directory: path)) }
}

let migrator = UploadMigrations.migrator
let identifiers = UploadMigrations.migrator.identifiers

/// What each shipped migration promises to create, read off `Migrations/*.swift`. A new migration
/// must be added here (``everyMigration_isListedWithTheDatabasesItCreates`` fails until it is).
let promisedDatabases: [String: [String]] = [
    "0001-create-event-log": ["events"],
    "0002-create-projections": ["sessions", "repositories", "repository-uploads", "projection-state"],
    "0003-create-image-tables": ["layers", "images", "image-tags"],
    "0004-create-merkle-tree": ["merkle-nodes"],
    "0005-create-audit-indexes": ["initiations", "repository-initiations", "invocations"],
    "0006-mark-request-digests": [],
    "0007-invocation-marks-by-position": ["invocation-marks"],
    "0008-indexes-that-append": ["active-uploads"],
    "0009-merkle-tree-at-the-right-edge": ["merkle-tree"],
    "0010-projections-in-their-own-environment": ["projection-writers"],
    "0011-create-signed-checkpoints": ["signed-checkpoints"],
    "0012-call-answered-events": [],
]

/// What a later migration deletes, by the migration that deletes it.
let retiredDatabases: [String: [String]] = [
    "0007-invocation-marks-by-position": ["invocations"],
    "0008-indexes-that-append": ["repository-uploads", "repository-initiations"],
    "0009-merkle-tree-at-the-right-edge": ["merkle-nodes"],
    "0010-projections-in-their-own-environment": [
        "sessions", "repositories", "active-uploads", "layers", "images", "image-tags", "initiations", "invocation-marks",
        "projection-state",
    ],
]

/// Every database a migrated store has, the migration records included.
let everyDatabase = [StoreMigrator.migrationsDatabaseName] + identifiers.flatMap { promisedDatabases[$0] ?? [] }

func bigEndian64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
func bigEndian32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

func exists(_ env: Environment, _ name: String) throws -> Bool {
    try env.read { txn -> Bool in try txn.openDatabase(name) != nil }
}

/// Every entry of the database `name`, or nil when it does not exist.
func contents(_ env: Environment, _ name: String) throws -> [[UInt8]: [UInt8]]? {
    try env.read { txn -> [[UInt8]: [UInt8]]? in
        guard let db = try txn.openDatabase(name) else { return nil }
        var entries: [[UInt8]: [UInt8]] = [:]
        try txn.scan(db) { key, value in
            entries[Array(key)] = Array(value)
            return true
        }
        return entries
    }
}

/// The values of `name` in key order.
func values(_ env: Environment, _ name: String) throws -> [[UInt8]] {
    try env.read { txn -> [[UInt8]] in
        guard let db = try txn.openDatabase(name) else { return [] }
        var out: [[UInt8]] = []
        try txn.scan(db) { _, value in
            out.append(Array(value))
            return true
        }
        return out
    }
}

/// The contents of every database a migrated store has (absent ones left out).
func snapshot(_ env: Environment) throws -> [String: [[UInt8]: [UInt8]]] {
    var all: [String: [[UInt8]: [UInt8]]] = [:]
    for name in everyDatabase { all[name] = try contents(env, name) }
    return all
}

/// `count` event records of 1 to 40 bytes, different at every position (the migration never decodes them).
func sampleRecords(_ count: Int) -> [[UInt8]] {
    (0..<count).map { i in
        Array("event \(i + 1) ".utf8) + (0..<(i * 7 % 29)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
    }
}

/// MTH over non-empty leaf hashes, RFC 9162 §2.1.1, naively; the hash functions themselves are
/// checked against SHA-256 in LogHashingTests.
func naiveRoot(_ leaves: ArraySlice<MerkleTree.Hash>) -> MerkleTree.Hash {
    precondition(!leaves.isEmpty)
    if leaves.count == 1 { return leaves[leaves.startIndex] }
    var k = 1
    while k * 2 < leaves.count { k *= 2 }
    let middle = leaves.startIndex + k
    return MerkleTree.nodeHash(naiveRoot(leaves[..<middle]), naiveRoot(leaves[middle...]))
}

struct Boom: Error {}
struct MissingNode: Error {}

/// A migration body that appends `name` to the database `log`, so a test can see which bodies
/// ran, how often and in what order.
func logging(_ name: String) -> StoreMigrator.Body {
    { txn in
        let log = try txn.openDatabase("log", create: true)!
        let next = try txn.count(log)
        try txn.put(log, bigEndian64(UInt64(next)), Array(name.utf8))
    }
}

func loggedNames(_ env: Environment) throws -> [String] {
    try values(env, "log").map { String(decoding: $0, as: UTF8.self) }
}

// MARK: - StoreMigrator itself

struct StoreMigratorTests {
    /// Each body runs once, in registration order, however the ids sort as keys; a later
    /// migration added to the list runs alone.
    @Test func migrate_runsEachBodyOnce_inRegistrationOrder() throws {
        var first = StoreMigrator()
        for name in ["zeta", "alpha", "mid"] { first.registerMigration(name, logging(name)) }
        try withEnvironment { env throws in
            #expect(try first.migrate(env) == ["zeta", "alpha", "mid"])
            #expect(try first.migrate(env) == [])
            #expect(try loggedNames(env) == ["zeta", "alpha", "mid"])
            #expect(try env.read { try first.appliedIdentifiers($0) } == ["zeta", "alpha", "mid"])

            var second = first
            second.registerMigration("beta", logging("beta"))
            #expect(try env.read { try second.status($0) } == .pending(["beta"]))
            #expect(try second.migrate(env) == ["beta"])
            #expect(try loggedNames(env) == ["zeta", "alpha", "mid", "beta"])
            #expect(try env.read { try second.appliedIdentifiers($0) } == ["zeta", "alpha", "mid", "beta"])
            #expect(try env.read { try first.status($0) } == .superseded(unknown: ["beta"]))
        }
    }

    @Test func migrateUpTo_runsNoBodyAfterTheNamedOne() throws {
        var steps = StoreMigrator()
        for name in ["1-a", "2-b", "3-c", "4-d"] { steps.registerMigration(name, logging(name)) }
        try withEnvironment { env throws in
            #expect(try steps.migrate(env, upTo: "2-b") == ["1-a", "2-b"])
            #expect(try loggedNames(env) == ["1-a", "2-b"])
            #expect(try steps.migrate(env, upTo: "3-c") == ["3-c"])
            #expect(try steps.migrate(env) == ["4-d"])
            #expect(try loggedNames(env) == ["1-a", "2-b", "3-c", "4-d"])
        }
    }

    /// A migration that throws keeps nothing it wrote (its databases included) and is not
    /// recorded; the ones before it stay applied and the ones after it do not run.
    @Test func aFailingMigration_keepsNothing_andStopsTheOnesAfterIt() throws {
        var failing = StoreMigrator()
        failing.registerMigration("0001-a", logging("a"))
        failing.registerMigration("0002-b") { txn in
            try logging("b")(txn)
            _ = try txn.openDatabase("b-table", create: true)
            throw Boom()
        }
        failing.registerMigration("0003-c", logging("c"))
        var fixed = StoreMigrator()
        for (id, name) in [("0001-a", "a"), ("0002-b", "b"), ("0003-c", "c")] { fixed.registerMigration(id, logging(name)) }

        try withEnvironment { env throws in
            #expect(throws: Boom.self) { try failing.migrate(env) }
            #expect(try loggedNames(env) == ["a"])
            #expect(try !exists(env, "b-table"))
            try env.read { txn throws -> Void in
                #expect(try failing.appliedIdentifiers(txn) == ["0001-a"])
                #expect(try failing.status(txn) == .pending(["0002-b", "0003-c"]))
            }
            #expect(try fixed.migrate(env) == ["0002-b", "0003-c"])
            #expect(try loggedNames(env) == ["a", "b", "c"])
        }
    }

    /// Applied order comes from the recorded 4-byte big-endian place, not from key order, and a
    /// record of any other length is reported rather than misread.
    @Test func appliedIdentifiers_followTheRecordedPlace_andRejectACorruptRecord() throws {
        let empty = StoreMigrator()
        try withEnvironment { env throws in
            try env.write { txn in
                let records = try #require(try txn.openDatabase(StoreMigrator.migrationsDatabaseName, create: true))
                try txn.put(records, Array("a".utf8), [0, 0, 1, 0])  // 256
                try txn.put(records, Array("b".utf8), [0, 0, 0, 255])  // 255
                try txn.put(records, Array("c".utf8), [1, 0, 0, 0])  // 16 777 216
                try txn.put(records, Array("d".utf8), [0, 0, 0, 0])  // 0
            }
            #expect(try env.read { try empty.appliedIdentifiers($0) } == ["d", "b", "a", "c"])
            #expect(try env.read { try empty.status($0) } == .superseded(unknown: ["d", "b", "a", "c"]))

            try env.write { txn in
                try txn.put(try #require(try txn.openDatabase(StoreMigrator.migrationsDatabaseName)), Array("e".utf8), [0, 1])
            }
            let error = #expect(throws: MigrationError.self) { try env.read { try empty.appliedIdentifiers($0) } }
            guard case .corruptRecord(let id)? = error else {
                Issue.record("expected MigrationError.corruptRecord, got \(String(describing: error))")
                return
            }
            #expect(id == "e")
        }
    }

    @Test func registeringAnIdentifierTwice_stopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            var twice = StoreMigrator()
            twice.registerMigration("0001-twice") { _ in }
            twice.registerMigration("0001-twice") { _ in }
        }
    }
}
