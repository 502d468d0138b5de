import Foundation
import LMDBKit
import UploadCore

/// The projections' own LMDB environment, in `projections/` under the data directory.
///
/// Everything in it is derived from the log, so its commits are not synced: only the log's commit
/// stands between a command and its answer, and it carries three B-trees (the log, the Merkle tree
/// and LMDB's main database) instead of nine. A process that dies loses nothing by this (LMDB has
/// written its commits into the kernel's page cache). A machine that crashes can leave an unsynced
/// LMDB file torn, so the log records who writes this one unsynced (``UnsyncedProjectionWriters``),
/// and the first open after such a crash deletes it and rebuilds it from the log. See the "Write
/// path" article.
struct ProjectionEnvironment: Sendable {
    static let subdirectory = "projections"

    let environment: Environment
    let schema: ProjectionSchema

    static func directory(of dataDirectory: String) -> String { dataDirectory + "/" + subdirectory }

    /// Opens for writing, creating the environment and its databases when missing, with the log's
    /// settings (map size, readers) but without synced commits, unless this machine cannot say
    /// when it restarted (``BootID``): then a crash could not be told apart, so every commit syncs.
    init(dataDirectory: String, like log: Environment.Configuration, bootId: String) throws {
        var configuration = log
        configuration.durable = log.durable && bootId == BootID.unknown
        try self.init(directory: Self.directory(of: dataDirectory), configuration: configuration)
    }

    private init(readOnly directory: String) throws {
        environment = try Environment(directory: directory, configuration: .readOnly)
        schema = try environment.read { try ProjectionSchema($0, create: false) }
    }

    /// Projections that hold nothing, at position 0, in a scratch environment whose files are
    /// gone as soon as it is open (it lives on in its open descriptors and its mapping): what a
    /// reader of the log alone reads in place of a store's own that it cannot read.
    static func empty() throws -> ProjectionEnvironment {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upload-coordinator-empty-\(RandomUUIDs.next())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = Environment.Configuration()
        configuration.durable = false
        configuration.mapSize = 1 << 20  // it never grows: no need to reserve the default's address space
        return try ProjectionEnvironment(directory: directory, configuration: configuration)
    }

    private init(directory: String, configuration: Environment.Configuration) throws {
        environment = try Environment(directory: directory, configuration: configuration)
        schema = try environment.write { try ProjectionSchema($0, create: true) }
    }

    /// Opens read-only (a checker's view); `nil` when no store has built projections there yet.
    static func openForReading(dataDirectory: String) throws -> ProjectionEnvironment? {
        let directory = directory(of: dataDirectory)
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else { return nil }
        return try ProjectionEnvironment(readOnly: directory)
    }
}

/// Who may have written the projection environment without syncing it, kept in the log's durable
/// environment: the machine's boot id, and how many stores opened during that boot have not yet
/// closed cleanly (closing syncs the projections first).
///
/// After a reboot, a count above zero means a writer did not close cleanly before the machine went
/// down: its last commits may never have reached the disk, and the file may be torn. A process
/// killed without a reboot leaves its count behind too, which costs one needless rebuild after the
/// next reboot, never a torn read.
enum UnsyncedProjectionWriters {
    static let databaseName = "projection-writers"
    private static let bootKey = Array("boot".utf8)
    private static let countKey = Array("writers".utf8)
    /// Stores that cannot name their boot, counted apart: they sync their own commits, so they
    /// never make the projections suspect, and never change the boot's count. (Processes sharing a
    /// directory are expected to see the same boot id; one that cannot is counted only so that
    /// `upload-replay` knows a store is open.)
    private static let unknownBootCountKey = Array("writers-of-unknown-boot".utf8)

    /// Counts a new writer in this boot, in the log's write transaction (which serialises every
    /// process's registration). - Returns: whether the projections may be torn and must be rebuilt.
    static func register(_ txn: Transaction, _ schema: Schema, bootId: String) throws -> Bool {
        guard bootId != BootID.unknown else {
            try addUnknownBootWriters(txn, schema, 1)
            return false
        }
        let (boot, count) = try read(txn, schema)
        let torn = mayBeTorn(boot: boot, count: count, bootId: bootId)
        try write(txn, schema, bootId: bootId, count: (boot == bootId ? count : 0) + 1)
        return torn
    }

    /// Whether a writer that never closed cleanly wrote unsynced in another boot. A side that cannot
    /// name its boot judges nothing torn: it would otherwise delete projections that the processes
    /// of a boot it cannot see have open (and it syncs its own commits; see ``ProjectionEnvironment``).
    private static func mayBeTorn(boot: String?, count: UInt64, bootId: String) -> Bool {
        guard let boot, bootId != BootID.unknown else { return false }
        return boot != bootId && count > 0
    }

    /// Whether the store registered last is the only one counted, in this boot or of an unknown
    /// one: no other process has the projections open to write, nor was killed with them open.
    static func registeredAlone(_ txn: Transaction, _ schema: Schema, bootId: String) throws -> Bool {
        let (boot, count) = try read(txn, schema)
        let unknownBootCount = try unknownBootWriters(txn, schema)
        if bootId == BootID.unknown { return unknownBootCount == 1 && count == 0 }
        return boot == bootId && count == 1 && unknownBootCount == 0
    }

    /// Stops counting a writer that synced the projections as it closed.
    static func unregister(_ txn: Transaction, _ schema: Schema, bootId: String) throws {
        guard bootId != BootID.unknown else { return try addUnknownBootWriters(txn, schema, -1) }
        let (boot, count) = try read(txn, schema)
        guard boot == bootId, count > 0 else { return }
        try write(txn, schema, bootId: bootId, count: count - 1)
    }

    /// Counts no writer at all: for a copy of the store whose projections were copied whole from
    /// one committed snapshot (a backup), which no process of any boot has written unsynced.
    static func forgetAll(_ txn: Transaction, _ schema: Schema) throws {
        try txn.clear(schema.projectionWriters)
    }

    private static func unknownBootWriters(_ txn: Transaction, _ schema: Schema) throws -> UInt64 {
        try txn.get(schema.projectionWriters, unknownBootCountKey).flatMap(BigEndian.uint64) ?? 0
    }

    private static func addUnknownBootWriters(_ txn: Transaction, _ schema: Schema, _ change: Int64) throws {
        let count = try unknownBootWriters(txn, schema)
        let changed = change < 0 ? count - min(count, UInt64(-change)) : count + UInt64(change)
        try txn.put(schema.projectionWriters, unknownBootCountKey, BigEndian.bytes(changed))
    }

    /// What a reader that cannot rebuild the projections needs to know: whether a crash of the
    /// machine may have torn them, and whether any store of this boot is still registered (one
    /// open, or one killed), which is the only way the projections can lag the log.
    static func state(_ txn: Transaction, _ schema: Schema, bootId: String) throws -> (mayBeTorn: Bool, writersOpen: Bool) {
        let (boot, count) = try read(txn, schema)
        let unknownBootCount = try unknownBootWriters(txn, schema)
        return (mayBeTorn(boot: boot, count: count, bootId: bootId), count > 0 || unknownBootCount > 0)
    }

    private static func read(_ txn: Transaction, _ schema: Schema) throws -> (boot: String?, count: UInt64) {
        let boot = try txn.get(schema.projectionWriters, bootKey).map { String(decoding: $0, as: UTF8.self) }
        let count = try txn.get(schema.projectionWriters, countKey).flatMap(BigEndian.uint64) ?? 0
        return (boot, count)
    }

    private static func write(_ txn: Transaction, _ schema: Schema, bootId: String, count: UInt64) throws {
        try txn.put(schema.projectionWriters, bootKey, Array(bootId.utf8))
        try txn.put(schema.projectionWriters, countKey, BigEndian.bytes(count))
    }
}

/// This boot of the machine, as Linux names it; it changes exactly when the machine restarts.
public enum BootID {
    /// What ``current`` is where the machine gives no boot id.
    public static let unknown = "unknown"

    public static let current: String = {
        let text = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
        let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
        // Without one (not Linux, or a sandbox without /proc), a crash of the machine cannot be
        // told from a restart of the process: the projections are then written with synced commits.
        return id.isEmpty ? unknown : id
    }()
}
