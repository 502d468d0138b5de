import CLMDB
import Foundation
@testable import LMDBKit
import Testing

struct LMDBKitTests {
    func withEnvironment(_ body: (Environment) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmdbkit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(Environment(directory: dir))
    }

    /// LMDB unmaps before it maps at a new size and leaves no map when that fails; a transaction
    /// or `mdb_env_info` after it would read freed memory (a crash). Every use must throw instead.
    @Test func aMapThatCouldNotBeMappedAgain_refusesEveryUseAfter() throws {
        try withEnvironment { env in
            try env.write { txn in _ = try txn.openDatabase("t", create: true) }
            #expect(try env.usage().mapSize > 0)
            #expect(throws: LMDBError.self) { try env.resize(to: 1 << 60) }  // no address space holds an exbibyte
            #expect(throws: LMDBError.self) { try env.read { _ in } }
            #expect(throws: LMDBError.self) { try env.write { _ in } }
            #expect(throws: LMDBError.self) { try env.usage() }
            #expect(throws: LMDBError.self) { try env.growMap() }
            let error = try #require(throws: LMDBError.self) { try env.read { _ in } }
            #expect(error.operation.contains("without a map"))
        }
    }

    /// Opening read-only where there is no store refuses, and leaves nothing behind.
    @Test func readOnly_whereThereIsNoStore_isRefused_andWritesNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmdbkit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: EnvironmentError.self) { try Environment(directory: dir, configuration: .readOnly) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    /// A `data.mdb` cut short used to open, and the first read of a page past its end killed the
    /// process with SIGBUS. It is refused at open, read-only or not, and left as it was.
    @Test(arguments: [false, true])
    func aFileCutShort_isRefusedAtOpen(readOnly: Bool) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmdbkit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let value = [UInt8](repeating: 7, count: 1_000)
        do {
            let env = try Environment(directory: dir)
            try env.write { txn in
                let db = try txn.openDatabase("t", create: true)!
                for key in 0..<200 { try txn.put(db, [UInt8(key)], value) }
            }
        }
        let file = dir + "/data.mdb"
        let whole = try #require(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        #expect(whole > 16_384)
        #expect(truncate(file, 16_384) == 0)
        var configuration = Environment.Configuration()
        configuration.readOnly = readOnly
        let error = try #require(throws: EnvironmentError.self) { try Environment(directory: dir, configuration: configuration) }
        guard case .truncated(_, let bytes, let inUse) = error else { Issue.record("\(error)"); return }
        #expect(bytes == 16_384 && (inUse ?? 0) > bytes)
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int == 16_384)
    }

    /// LMDB alone (as this product before it extended the file after each commit) leaves data.mdb
    /// shorter than its last page when a commit's last pages were allocated and freed within it,
    /// never written: a large record put and deleted. Such a store was refused as cut short, with
    /// nothing missing. Opened to write, it is extended over those free pages and opens, its
    /// records whole; read-only, it is still refused (nothing may be written).
    @Test func aFileLMDBLeftShortOfFreePagesOnly_isExtendedWhenOpenedToWrite() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmdbkit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kept = [UInt8](repeating: 7, count: 1_000)
        /// `mdb_put` of `value` at `key`, or `mdb_del` of `key` when `value` is nil.
        func change(_ txn: OpaquePointer?, _ dbi: MDB_dbi, _ key: String, _ value: [UInt8]?) -> Int32 {
            var keyBytes = Array(key.utf8), valueBytes = value ?? []
            return keyBytes.withUnsafeMutableBytes { keyBuffer in
                valueBytes.withUnsafeMutableBytes { valueBuffer in
                    var rawKey = MDB_val(mv_size: keyBuffer.count, mv_data: keyBuffer.baseAddress)
                    var rawValue = MDB_val(mv_size: valueBuffer.count, mv_data: valueBuffer.baseAddress)
                    return value == nil ? mdb_del(txn, dbi, &rawKey, nil) : mdb_put(txn, dbi, &rawKey, &rawValue, 0)
                }
            }
        }
        var env: OpaquePointer?
        #expect(mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0 && mdb_env_set_mapsize(env, 1 << 30) == 0)
        #expect(mdb_env_open(env, dir, 0, 0o600) == 0)
        // Large records kept and large records put and deleted, in turn: the last commit's last
        // pages go unwritten (as LMDB 0.9.24 does it; the earlier ones happen to be written).
        let big = [UInt8](repeating: 1, count: 4 << 20)
        let commits: [[(String, [UInt8]?)]] = [[("kept", kept)]] + (1...5).map { i in
            i.isMultiple(of: 2) ? [("k\(i)", big)] : [("k\(i)", big), ("k\(i)", nil)]
        }
        for changes in commits {
            var txn: OpaquePointer?
            var dbi: MDB_dbi = 0
            #expect(mdb_txn_begin(env, nil, 0, &txn) == 0 && mdb_dbi_open(txn, "t", UInt32(MDB_CREATE), &dbi) == 0)
            for (key, value) in changes { #expect(change(txn, dbi, key, value) == 0) }
            #expect(mdb_txn_commit(txn) == 0)
        }
        mdb_env_close(env)
        let file = dir + "/data.mdb"
        let short = try #require(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let refused = try #require(throws: EnvironmentError.self) { try Environment(directory: dir, configuration: .readOnly) }
        #expect(refused.isCutShort, "LMDB left it short: \(short) bytes")
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int == short, "read-only: left as it was")
        let opened = try Environment(directory: dir)
        #expect(try opened.read { txn in try txn.get(try #require(try txn.openDatabase("t")), Array("kept".utf8)) } == kept)
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int ?? 0 > short)
    }

    /// LMDB takes an empty data.mdb for a new store: cut to nothing (a copy onto a full disk) in a
    /// directory that holds more (a data folder's blobs, staging), it would have opened as an
    /// empty log. Alone with its lock file (an open that died before its first commit), it opens.
    @Test func anEmptiedFile_isRefused_unlessTheDirectoryHoldsNothingElse() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmdbkit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let env = try Environment(directory: dir)
            try env.write { txn in try txn.put(try txn.openDatabase("t", create: true)!, [1], [1]) }
        }
        #expect(truncate(dir + "/data.mdb", 0) == 0)
        #expect(throws: Never.self) { _ = try Environment(directory: dir) }
        #expect(truncate(dir + "/data.mdb", 0) == 0)
        try FileManager.default.createDirectory(atPath: dir + "/staging", withIntermediateDirectories: false)
        let error = try #require(throws: EnvironmentError.self) { try Environment(directory: dir) }
        guard case .truncated(_, 0, nil) = error else { Issue.record("\(error)"); return }
        #expect(try FileManager.default.attributesOfItem(atPath: dir + "/data.mdb")[.size] as? Int == 0, "left as it was")
    }

    /// SwiftLMDB once had wrong flag values; MDB_APPEND must really refuse a key out of order.
    @Test func put_withAppend_refusesAKeyThatDoesNotSortLast() throws {
        try withEnvironment { env in
            try env.write { txn in
                let db = try txn.openDatabase("log", create: true)!
                try txn.put(db, [0, 2], [1], options: .append)
                let error = try #require(throws: LMDBError.self) { try txn.put(db, [0, 1], [1], options: .append) }
                #expect(error.code == .keyExists)
            }
        }
    }

    @Test func put_withNoOverwrite_refusesAnExistingKey() throws {
        try withEnvironment { env in
            try env.write { txn in
                let db = try txn.openDatabase("t", create: true)!
                try txn.put(db, [1], [1], options: .noOverwrite)
                #expect(throws: LMDBError.self) { try txn.put(db, [1], [2], options: .noOverwrite) }
            }
        }
    }

    /// SwiftLMDB once read `mv_data` after its transaction ended; values must be copies.
    @Test func get_returnsACopyThatOutlivesTheTransaction() throws {
        try withEnvironment { env in
            try env.write { txn in
                let db = try txn.openDatabase("t", create: true)!
                try txn.put(db, [1], Array(repeating: 7, count: 4096))
            }
            let value = try env.read { txn in try txn.get(try txn.openDatabase("t")!, [1]) }
            try env.write { txn in try txn.put(try txn.openDatabase("t")!, [1], Array(repeating: 9, count: 4096)) }
            #expect(value == Array(repeating: 7, count: 4096))
        }
    }

    @Test func write_whenBodyThrows_keepsNothing() throws {
        struct Boom: Error {}
        try withEnvironment { env in
            try env.write { txn in _ = try txn.openDatabase("t", create: true) }
            #expect(throws: Boom.self) {
                try env.write { txn in
                    try txn.put(try txn.openDatabase("t")!, [1], [1])
                    throw Boom()
                }
            }
            #expect(try env.read { try $0.get(try $0.openDatabase("t")!, [1]) } == nil)
        }
    }

    @Test func scan_visitsKeysInByteOrderFromAStartKey() throws {
        try withEnvironment { env in
            try env.write { txn in
                let db = try txn.openDatabase("t", create: true)!
                for k: UInt8 in [5, 1, 3, 9] { try txn.put(db, [k], [k]) }
            }
            var seen: [UInt8] = []
            try env.read { txn in
                try txn.scan(try txn.openDatabase("t")!, from: [2]) { key, _ in
                    seen.append(key[0])
                    return key[0] < 5
                }
            }
            #expect(seen == [3, 5])
            #expect(try env.read { try $0.last(try $0.openDatabase("t")!)?.key } == [9])
        }
    }

    @Test func scanBackward_visitsKeysInDescendingOrderFromBeforeAnEndKey() throws {
        try withEnvironment { env in
            try env.write { txn in
                let db = try txn.openDatabase("t", create: true)!
                for k: [UInt8] in [[5], [1], [3], [9], [3, 0]] { try txn.put(db, k, [1]) }
            }
            func backward(before end: [UInt8]?, while keep: @escaping ([UInt8]) -> Bool = { _ in true }) throws -> [[UInt8]] {
                var seen: [[UInt8]] = []
                try env.read { txn in
                    try txn.scanBackward(try txn.openDatabase("t")!, before: end) { key, _ in
                        seen.append(Array(key))
                        return keep(Array(key))
                    }
                }
                return seen
            }
            #expect(try backward(before: nil) == [[9], [5], [3, 0], [3], [1]])
            #expect(try backward(before: [5]) == [[3, 0], [3], [1]], "an end that is a key: strictly before it")
            #expect(try backward(before: [4]) == [[3, 0], [3], [1]], "an end between keys")
            #expect(try backward(before: [3, 0]) == [[3], [1]])
            #expect(try backward(before: [10]) == [[9], [5], [3, 0], [3], [1]], "an end past every key")
            #expect(try backward(before: [1]) == [], "an end at the first key")
            #expect(try backward(before: [0]) == [], "an end before every key")
            #expect(try backward(before: nil, while: { $0 != [5] }) == [[9], [5]], "stops when asked")
        }
    }

    @Test func scanBackward_withAnEndLongerThanAnyKey_andOnAnEmptyDatabase() throws {
        try withEnvironment { env in
            let longest = Transaction.maximumKeySize
            let prefix = [UInt8](repeating: 7, count: longest)
            try env.write { txn in
                _ = try txn.openDatabase("empty", create: true)
                let db = try txn.openDatabase("t", create: true)!
                for k: [UInt8] in [prefix, [7], [8]] { try txn.put(db, k, [1]) }
            }
            func backward(_ name: String, before end: [UInt8]?) throws -> [Int] {
                var seen: [Int] = []
                try env.read { txn in
                    try txn.scanBackward(try txn.openDatabase(name)!, before: end) { key, _ in
                        seen.append(key.count == longest ? -1 : Int(key[0]))
                        return true
                    }
                }
                return seen
            }
            #expect(try backward("t", before: prefix + [0]) == [-1, 7], "the longest key is a prefix of the end, so before it")
            #expect(try backward("t", before: prefix) == [7])
            #expect(try backward("empty", before: nil) == [])
            #expect(try backward("empty", before: [1]) == [])
        }
    }

    @Test func sameDirectory_openedTwiceInOneProcess_isRefused() throws {
        try withEnvironment { env in
            #expect(throws: EnvironmentError.self) { _ = try Environment(directory: env.directory) }
        }
    }

    @Test func migrator_appliesInOrderUpToAStep_andDetectsANewerStore() throws {
        var old = StoreMigrator()
        old.registerMigration("0001-a") { txn in _ = try txn.openDatabase("a", create: true) }
        old.registerMigration("0002-b") { txn in _ = try txn.openDatabase("b", create: true) }
        var newer = old
        newer.registerMigration("0003-c") { txn in _ = try txn.openDatabase("c", create: true) }
        try withEnvironment { (env: Environment) throws in
            #expect(try old.migrate(env, upTo: "0001-a") == ["0001-a"])
            #expect(try env.read { try old.status($0) } == .pending(["0002-b"]))
            #expect(try env.read { try $0.openDatabase("b") } == nil)
            #expect(try newer.migrate(env) == ["0002-b", "0003-c"])
            #expect(try env.read { try newer.appliedIdentifiers($0) } == ["0001-a", "0002-b", "0003-c"])
            #expect(try env.read { try old.status($0) } == .superseded(unknown: ["0003-c"]))
            #expect(throws: MigrationError.self) { try old.migrate(env) }
        }
    }
}
