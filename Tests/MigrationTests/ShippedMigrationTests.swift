import Foundation
import LMDBKit
import LogHashing
import Testing
import UploadMigrations

// MARK: - The shipped migrations

struct ShippedMigrationTests {
    /// Numbers are unique and consecutive (two branches that both add `0007-…` collide here, not
    /// in someone's store); names are lower-case words joined by single hyphens.
    @Test func identifiers_areUniqueSortedAndNumberedNNNNDashName() throws {
        try #require(!identifiers.isEmpty)
        #expect(Set(identifiers).count == identifiers.count)
        #expect(identifiers == identifiers.sorted())
        for (i, id) in identifiers.enumerated() {
            let number = id.prefix(4), name = id.dropFirst(5)
            #expect(number.count == 4 && number.allSatisfy { $0.isASCII && $0.isNumber }, "\(id) starts with four digits")
            #expect(Int(number) == i + 1, "\(id) is number \(i + 1)")
            #expect(id.dropFirst(4).first == "-", "\(id) has a hyphen after its number")
            let allowed = name.allSatisfy { $0 == "-" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
            #expect(!name.isEmpty && allowed && !name.hasPrefix("-") && !name.hasSuffix("-") && !name.contains("--"),
                    "\(id) is named in lower-case words joined by hyphens")
        }
        #expect(UploadMigrations.latest == identifiers.last)
    }

    /// Each `Migrations/NNNN-name.swift` is registered under its file's name, and nothing else is.
    @Test func identifiers_matchTheMigrationFiles() throws {
        let directory = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Migrations").path
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".swift") && $0 != "Migrations.swift" }
            .map { String($0.dropLast(".swift".count)) }
        #expect(Set(files) == Set(identifiers))
    }

    @Test func everyMigration_isListedWithTheDatabasesItCreates() {
        #expect(Set(promisedDatabases.keys) == Set(identifiers))
        let names = everyDatabase
        #expect(Set(names).count == names.count, "no two migrations create the same database")
    }

    @Test func aFreshEnvironment_hasEveryMigrationPending_inOrder() throws {
        try withEnvironment { env throws in
            try env.read { txn throws -> Void in
                #expect(try migrator.appliedIdentifiers(txn) == [])
                #expect(try migrator.status(txn) == .pending(identifiers))
            }
            #expect(try !exists(env, StoreMigrator.migrationsDatabaseName))
            for name in everyDatabase { #expect(try !exists(env, name), "\(name)") }
        }
    }

    @Test func migrate_appliesEveryMigrationInOrder_andRecordsEachWithItsPlace() throws {
        try withEnvironment { env throws in
            #expect(try migrator.migrate(env) == identifiers)
            try env.read { txn throws -> Void in
                #expect(try migrator.appliedIdentifiers(txn) == identifiers)
                #expect(try migrator.status(txn) == .current)
            }
            // The records are the on-disk format older and newer binaries read: id → 4-byte big-endian place.
            let records = try #require(try contents(env, StoreMigrator.migrationsDatabaseName))
            #expect(records.count == identifiers.count)
            for (i, id) in identifiers.enumerated() {
                #expect(records[Array(id.utf8)] == bigEndian32(UInt32(i)), "\(id)")
            }
        }
    }

    @Test func everyPromisedDatabase_existsAfterMigrating_andStartsEmpty_unlessRetired() throws {
        let retired = Set(retiredDatabases.values.joined())
        try withEnvironment { env throws in
            try migrator.migrate(env)
            for name in retired { #expect(try !exists(env, name), "\(name) was retired") }
            for id in identifiers {
                for name in promisedDatabases[id] ?? [] where !retired.contains(name) {
                    let entries = try #require(try contents(env, name), "\(id) creates \(name)")
                    #expect(entries.isEmpty, "\(name) starts empty")
                }
            }
        }
    }

    /// Running the migrations again applies nothing and leaves the data written since alone
    /// (0004 re-run would rebuild the tree, 0010 would drop what it names).
    @Test func migrate_isIdempotent() throws {
        try withEnvironment { env throws in
            #expect(try migrator.migrate(env) == identifiers)
            let record = Array("an event".utf8)
            try env.write { txn in
                try txn.put(try #require(try txn.openDatabase("events")), bigEndian64(1), record)
                try txn.put(try #require(try txn.openDatabase("merkle-tree")), MerkleTree.nodeKey(level: 0, index: 0),
                            MerkleTree.leafHash(position: 1, record: record))
                try txn.put(try #require(try txn.openDatabase("projection-writers")), Array("writers".utf8), bigEndian64(1))
                try txn.put(try #require(try txn.openDatabase("sessions", create: true)), Array("upload-1".utf8), [1, 2, 3])
            }
            let before = try snapshot(env)

            #expect(try migrator.migrate(env) == [])
            #expect(try migrator.migrate(env, upTo: identifiers[0]) == [])
            #expect(try migrator.migrate(env, upTo: identifiers[identifiers.count - 1]) == [])

            #expect(try snapshot(env) == before)
            #expect(try contents(env, "projection-writers")?[Array("writers".utf8)] == bigEndian64(1))
            #expect(try contents(env, "sessions")?[Array("upload-1".utf8)] == [1, 2, 3])
            #expect(try env.read { try migrator.status($0) } == .current)
        }
    }

    @Test(arguments: UploadMigrations.migrator.identifiers)
    func migrateUpTo_stopsAfterTheNamedMigration(last: String) throws {
        let place = try #require(identifiers.firstIndex(of: last))
        let done = Array(identifiers[...place]), later = Array(identifiers[(place + 1)...])
        try withEnvironment { env throws in
            #expect(try migrator.migrate(env, upTo: last) == done)
            let expected: MigrationStatus = later.isEmpty ? .current : .pending(later)
            try env.read { txn throws -> Void in
                #expect(try migrator.appliedIdentifiers(txn) == done)
                #expect(try migrator.status(txn) == expected)
            }
            let retired = Set(done.flatMap { retiredDatabases[$0] ?? [] })
            for id in done {
                for name in promisedDatabases[id] ?? [] where !retired.contains(name) {
                    #expect(try exists(env, name), "\(id) created \(name)")
                }
            }
            for name in retired { #expect(try !exists(env, name), "\(name) was retired") }
            for id in later {
                for name in promisedDatabases[id] ?? [] { #expect(try !exists(env, name), "\(id) did not run, yet \(name) exists") }
            }
            // The rest follows on the next call.
            #expect(try migrator.migrate(env) == later)
            #expect(try env.read { try migrator.status($0) } == .current)
        }
    }

    @Test func migrateUpTo_anAlreadyAppliedMigration_appliesNothingMore() throws {
        try #require(identifiers.count >= 4)
        try withEnvironment { env throws in
            #expect(try migrator.migrate(env, upTo: identifiers[2]) == Array(identifiers[...2]))
            #expect(try migrator.migrate(env, upTo: identifiers[1]) == [])
            #expect(try migrator.migrate(env, upTo: identifiers[2]) == [])
            #expect(try env.read { try migrator.status($0) } == .pending(Array(identifiers[3...])))
        }
    }

    @Test func appliedMigrations_surviveReopening_readOnly() throws {
        try withScratchDirectory { path in
            do {
                let env = try Environment(directory: path)
                try migrator.migrate(env, upTo: identifiers[1])
            }
            do {
                let env = try Environment(directory: path, configuration: .readOnly)
                #expect(try env.read { try migrator.appliedIdentifiers($0) } == Array(identifiers[...1]))
                // A read-only handle cannot migrate, and trying leaves the store as it was.
                #expect(throws: (any Error).self) { try migrator.migrate(env) }
            }
            let env = try Environment(directory: path)
            #expect(try env.read { try migrator.status($0) } == .pending(Array(identifiers[2...])))
            #expect(try migrator.migrate(env) == Array(identifiers[2...]))
        }
    }

    /// A store a newer binary migrated further: the older migrator must say so and touch nothing.
    @Test func aStoreMigratedByANewerBinary_isSuperseded_andMigrateRefusesIt() throws {
        var newer = UploadMigrations.migrator
        newer.registerMigration("9999-from-the-future") { txn in _ = try txn.openDatabase("future", create: true) }
        try withEnvironment { env throws in
            #expect(try newer.migrate(env) == identifiers + ["9999-from-the-future"])
            #expect(try env.read { try newer.status($0) } == .current)
            #expect(try env.read { try migrator.status($0) } == .superseded(unknown: ["9999-from-the-future"]))

            let before = try snapshot(env)
            let error = #expect(throws: MigrationError.self) { try migrator.migrate(env) }
            guard case .superseded(let unknown)? = error else {
                Issue.record("expected MigrationError.superseded, got \(String(describing: error))")
                return
            }
            #expect(unknown == ["9999-from-the-future"])
            #expect(error?.description.contains("9999-from-the-future") == true)
            #expect(try snapshot(env) == before)
        }
    }

    /// An unknown record outranks pending migrations: an old binary must not half-upgrade a store
    /// that a newer one has written.
    @Test func anUnknownRecordedMigration_outranksPendingOnes_andNothingMoreIsApplied() throws {
        try #require(identifiers.count >= 4)
        try withEnvironment { env throws in
            try migrator.migrate(env, upTo: identifiers[2])
            try env.write { txn in
                let records = try #require(try txn.openDatabase(StoreMigrator.migrationsDatabaseName))
                try txn.put(records, Array("0099-from-the-future".utf8), bigEndian32(99))
            }
            #expect(try env.read { try migrator.status($0) } == .superseded(unknown: ["0099-from-the-future"]))
            #expect(throws: MigrationError.self) { try migrator.migrate(env) }
            #expect(try env.read { try migrator.appliedIdentifiers($0) } == Array(identifiers[...2]) + ["0099-from-the-future"])
            for id in identifiers[3...] {
                for name in promisedDatabases[id] ?? [] { #expect(try !exists(env, name), "\(id) ran anyway: \(name) exists") }
            }
        }
    }

    // MARK: 0004: the Merkle tree over events already in the log

    /// Events written before 0004 (raw puts, as an older binary left them) get every complete
    /// subtree stored under `level ‖ big-endian index`, with the RFC 9162 hash of the leaves it
    /// covers; 0009 then moves each hash to `big-endian last leaf ‖ level` in `merkle-tree`. The
    /// events themselves stay byte for byte.
    @Test(arguments: [0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 33, 64, 100])
    func createMerkleTree_overExistingEvents_storesEveryCompleteSubtree(size: Int) throws {
        let before = try #require(identifiers.firstIndex(of: "0004-create-merkle-tree"))
        let records = sampleRecords(size)
        var events: [[UInt8]: [UInt8]] = [:]
        for (i, record) in records.enumerated() { events[bigEndian64(UInt64(i + 1))] = record }
        try withEnvironment { env throws in
            try migrator.migrate(env, upTo: identifiers[before - 1])
            try env.write { txn in
                let log = try #require(try txn.openDatabase("events"))
                for (i, record) in records.enumerated() { try txn.put(log, bigEndian64(UInt64(i + 1)), record, options: .append) }
            }
            #expect(try migrator.migrate(env, upTo: identifiers[before]) == [identifiers[before]])

            let leaves = records.enumerated().map { MerkleTree.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
            var expected: [[UInt8]: [UInt8]] = [:], expectedAtTheRightEdge: [[UInt8]: [UInt8]] = [:]
            var level = 0
            while 1 << level <= size {
                for index in 0..<(size >> level) {
                    let hash = naiveRoot(leaves[(index << level)..<((index + 1) << level)])
                    expected[[UInt8(level)] + bigEndian64(UInt64(index))] = hash
                    expectedAtTheRightEdge[bigEndian64(UInt64((index + 1) << level)) + [UInt8(level)]] = hash
                }
                level += 1
            }
            let stored = try #require(try contents(env, "merkle-nodes"))
            #expect(stored.count == 2 * size - size.nonzeroBitCount)
            #expect(stored == expected)
            if size > 0 {
                let root = try MerkleTree.rootHash(0, UInt64(size)) { level, index in
                    guard let hash = stored[[level] + bigEndian64(index)] else { throw MissingNode() }
                    return hash
                }
                #expect(root == naiveRoot(leaves[...]))
            }
            #expect(try contents(env, "events") == events, "the events are not rewritten")

            try migrator.migrate(env)
            #expect(try !exists(env, "merkle-nodes"))
            #expect(try contents(env, "merkle-tree") == expectedAtTheRightEdge)
            #expect(try contents(env, "events") == events)
        }
    }

    /// A log with a hole cannot have a tree: the migration fails, and neither the tree nor the
    /// record of 0004 is left behind.
    @Test func createMerkleTree_overALogWithAHole_failsAndLeavesNothingBehind() throws {
        let before = try #require(identifiers.firstIndex(of: "0004-create-merkle-tree"))
        try withEnvironment { env throws in
            try migrator.migrate(env, upTo: identifiers[before - 1])
            try env.write { txn in
                let log = try #require(try txn.openDatabase("events"))
                for position: UInt64 in [1, 2, 4] { try txn.put(log, bigEndian64(position), Array("event \(position)".utf8)) }
            }
            let error = #expect(throws: MigrationError.self) { try migrator.migrate(env) }
            if case .corruptRecord(_)? = error {} else { Issue.record("expected MigrationError.corruptRecord, got \(String(describing: error))") }
            #expect(try env.read { try migrator.status($0) } == .pending(Array(identifiers[before...])))
            #expect(try !exists(env, "merkle-nodes"))
            #expect(try contents(env, "events")?.count == 3)
        }
    }
}
