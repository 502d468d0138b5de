import ArgumentParser
import Foundation
import LMDBKit
import Logging
import UploadCore
import UploadService
import UploadStore

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back a data folder up while it is served: a new data folder, consistent at one log position; prints that position and the Merkle root.",
        discussion: """
            The log and the projections are copied compacted from read snapshots (the writer goes on), \
            then the blobs the copy serves are hard-linked (copied on another file system), the bytes \
            each active upload has recorded are copied from its staging, and the keys are copied. \
            The folder appears under its name only when complete. `serve`, `upload-replay` and \
            `audit root` work on it as they are. On PostgreSQL, use the database's own tools (see the \
            README's "Operating it").
            """)

    @OptionGroup var store: StoreOptions
    @Option(help: "The backup's data folder: a new one, or an empty folder.") var to: String
    @Flag(help: "Back up a store whose folder lacks blobs it names, or staged bytes of uploads in progress (reported), instead of refusing.") var allowMissingBlobs = false
    @Flag(help: "Print the report as one JSON object.") var json = false

    /// For tests: a file the backup writes once its snapshot is taken, then waits for it to be removed.
    static let pauseVariable = "UPLOAD_COORDINATOR_TEST_BACKUP_PAUSE_FILE"

    func validate() throws {
        if try store.database() != nil {
            throw ValidationError("""
                backup copies an LMDB data folder. On PostgreSQL back the database up with its own tools \
                (pg_basebackup, or pg_dump --serializable-deferrable), then copy the --data-dir folder \
                after the database; see the README's "Operating it".
                """)
        }
        if let reason = Environment.noStore(in: store.dataDir) {
            throw ValidationError(reason.isMissing ? "--data-dir \(store.dataDir) holds no store." : reason.description)
        }
        // Its LMDB store is the old copy of one now in PostgreSQL: a backup of it would be a
        // servable folder of stale data.
        if let moved = StoreBackends.MovedToPostgreSQL.refusal(directory: store.dataDir) { throw ValidationError(moved.message) }
        if let refusal = StoreBackup.refusal(destination: to, dataDirectory: store.dataDir) { throw ValidationError("--to: \(refusal).") }
    }

    func run() async throws {
        PartialFolder.removeOnInterrupt()
        let report: StoreBackup.Report
        do {
            report = try await StoreBackup.run(
                dataDirectory: store.dataDir, to: to, settings: try store.settings(), allowMissingBlobs: allowMissingBlobs,
                afterSnapshot: { await pauseIfATestAsks(Self.pauseVariable) }, logger: Logger(label: "upload-coordinator"))
        } catch let error as ValidationError { throw error } catch { fail(error) }
        if json {
            printLine(.object([
                ("destination", .string(to)), ("position", .uint(report.position)),
                ("treeSize", .uint(report.position)), ("rootHash", .string(report.rootHash)),
                ("blobs", .uint(UInt64(report.blobs))), ("copiedBlobs", .uint(UInt64(report.copiedBlobs))),
                ("stagedUploads", .uint(UInt64(report.stagedUploads))), ("stagedBytes", .uint(report.stagedBytes)),
                ("missingBlobs", .array(report.missingBlobs.map(JSONValue.string))),
                ("missingStaging", .array(report.missingStaging.map(JSONValue.string))),
            ]))
        } else {
            print("backed up \(store.dataDir) to \(to) at position \(report.position)")
            print("merkle root: \(report.rootHash) (tree size \(report.position))")
            print("blobs: \(report.blobs) (\(report.copiedBlobs) copied, the rest hard-linked); staged uploads: \(report.stagedUploads) (\(report.stagedBytes) bytes)")
            for digest in report.missingBlobs { print("warning: blob \(digest) is named by the store but missing from its folder") }
            for upload in report.missingStaging { print("warning: upload \(upload) is in progress but its folder lacks the bytes the log records") }
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print what to watch before the disk fills: events, map use, uploads, repositories, images, blob and staging bytes, reader slots.")

    @OptionGroup var store: StoreOptions
    @Flag(help: "Print the figures as one JSON object.") var json = false

    func run() async throws {
        // Read-only: stats never migrates the store, rebuilds its projections, counts as its writer,
        // or waits for its write lock (older nodes may still be serving a database).
        let s: StoreStatistics
        do {
            // With a database the folder holds only blobs and staging: a folder missing (a typo, an
            // unmounted share) would be counted as an empty blob store.
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: store.dataDir, isDirectory: &isFolder), isFolder.boolValue else {
                throw StoreError(.io, "there is no folder \(store.dataDir): give the --data-dir that holds the store's blobs and staging")
            }
            if let url = try store.database() { s = try PostgresReader(url: url).statistics() } else { s = try ReadOnlyStore(directory: store.dataDir).statistics() }
        } catch let error as ValidationError { throw error } catch { fail(error) }
        let blobs = FolderUsage(DigestAlgorithm.allCases.map { store.dataDir + "/blobs/" + $0.rawValue })
        let staging = FolderUsage([store.dataDir + "/staging"])
        let (free, total) = Disk.bytes(of: store.dataDir) ?? (0, 0)
        if json {
            printLine(.object([
                ("events", .uint(s.logPosition)), ("logPosition", .uint(s.logPosition)), ("checkpointLag", .uint(s.checkpointLag)),
                ("activeUploads", .uint(UInt64(s.activeSessions))), ("repositories", .uint(UInt64(s.repositories))),
                ("images", .uint(UInt64(s.images))),
                ("mapSizeBytes", .uint(UInt64(s.mapSizeBytes))), ("mapUsedBytes", .uint(UInt64(s.mapUsedBytes))),
                ("projectionsMapSizeBytes", .uint(UInt64(s.projectionMapSizeBytes))),
                ("projectionsMapUsedBytes", .uint(UInt64(s.projectionMapUsedBytes))),
                ("readerSlots", .uint(UInt64(s.readers))), ("maxReaderSlots", .uint(UInt64(s.maxReaders))),
                ("blobs", .uint(blobs.files)), ("blobBytes", .uint(blobs.bytes)),
                ("stagedUploads", .uint(staging.files)), ("stagingBytes", .uint(staging.bytes)),
                ("diskFreeBytes", .uint(free)), ("diskBytes", .uint(total)),
            ]))
            return
        }
        let rows: [(String, String)] = [
            ("events", "\(s.logPosition) (the log's position; checkpoint lag \(s.checkpointLag))"),
            ("active uploads", "\(s.activeSessions)"),
            ("repositories", "\(s.repositories)"),
            ("images", "\(s.images)"),
            ("log map", Self.usage(s.mapUsedBytes, of: s.mapSizeBytes)),
            ("projections map", Self.usage(s.projectionMapUsedBytes, of: s.projectionMapSizeBytes)),
            ("reader slots", s.maxReaders > 0 ? "\(s.readers) of \(s.maxReaders) held (this read's among them)" : "n/a"),
            ("blobs", "\(blobs.files) files, \(Self.bytes(blobs.bytes))"),
            ("staging", "\(staging.files) files, \(Self.bytes(staging.bytes))"),
            ("disk", "\(Self.bytes(free)) free of \(Self.bytes(total))"),
        ]
        for (name, value) in rows { print((name + ":").padding(toLength: 18, withPad: " ", startingAt: 0) + value) }
    }

    static func usage(_ used: Int, of size: Int) -> String {
        size == 0 ? "n/a (PostgreSQL)" : "\(bytes(UInt64(used))) used of \(bytes(UInt64(size))) (\(String(format: "%.1f", Double(used) * 100 / Double(size))) %)"
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n), unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }
}

/// Files and bytes of regular files directly in some folders (a missing folder counts nothing).
/// Dot-files are the store's bookkeeping, not blobs or uploads: the upload locks, copies in progress.
struct FolderUsage {
    var files: UInt64 = 0
    var bytes: UInt64 = 0

    init(_ folders: [String]) {
        for folder in folders {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where !name.hasPrefix(".") {
                var info = stat()
                guard stat(folder + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                files += 1
                bytes += UInt64(info.st_size)
            }
        }
    }
}
