import ArgumentParser
import Foundation
import UploadCore
import UploadService
import UploadStore

struct GarbageCollectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "garbage-collect",
        abstract: "Remove the blobs no repository names (deleted repositories' layers and logos, pushes refused part way), while the folder is served.",
        discussion: """
            Reads which blobs the store's layers and logos name, read-only and at the log's tail, then \
            removes every other blob file of the folder that was not used within --min-age. Every \
            command that names a blob marks it used first, deleting a repository marks its blobs, and \
            a blob marked while it is being removed is put back, so it runs beside serve: on LMDB on \
            the serving machine, on PostgreSQL on any node. No upload's staging and nothing of the \
            log is touched (a clock probe file is written and removed in staging). \
            Prints how many blobs and bytes it removed (--json: which). Exit status: 0 done; 64 a \
            folder or flag refused before the store is read; 1 refused, or failed before removing \
            anything (it says why); 2 some blobs could not be removed (named on stderr), the rest were; \
            128 + the signal when SIGINT, SIGTERM or SIGHUP stopped it (once the blob it was removing \
            was removed or put back).
            """)

    @OptionGroup var store: StoreOptions
    @Option(help: "Keep a blob no one names until this many seconds after its last use (a push, a mount, its repository's deletion): longer than a database backup's blob copy trails its dump. Below 60 it counts as 60: a command may take up to 30 s from marking a blob to committing the event that names it.")
    var minAge: Int64 = 86_400
    @Flag(help: "Report what would be removed, removing nothing.") var dryRun = false
    @Flag(help: "Collect even when the store names no blob, the folder lacks half or more of those it names, or a blob to remove was used after the store's last event (each looks like another store's folder, or an old copy of this one's).")
    var force = false
    @Flag(help: "Print the report as one JSON object, with the digests removed.") var json = false

    func validate() throws {
        guard minAge >= 0 else { throw ValidationError("--min-age must be 0 or more seconds.") }
        for folder in ["blobs", "staging"] {  // staging: where the file system's clock is read
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: store.dataDir + "/" + folder, isDirectory: &isFolder), isFolder.boolValue else {
                throw ValidationError("--data-dir \(store.dataDir) has no \(folder) folder: give the folder serve keeps its blobs and staging in.")
            }
        }
        let movedNote = StoreBackends.MovedToPostgreSQL.refusal(directory: store.dataDir)
        if try store.database() == nil {
            // Its LMDB store no longer names what is pushed: every new blob would look unnamed.
            if let movedNote { throw ValidationError(movedNote.message) }
        } else if let refusal = BlobStore.storeRefusal(folder: store.dataDir, databaseURL: try store.database()) {
            throw ValidationError(refusal)
        }
    }

    /// For tests: a file the collection writes once it has moved its first blob aside, then waits
    /// for it to be removed.
    static let pauseVariable = "UPLOAD_COORDINATOR_TEST_COLLECTION_PAUSE_FILE"

    func run() async throws {
        BlobStore.finishTheBlobOnInterrupt()
        let collection: BlobStore.CollectionReport
        do {
            let reader = try StoreBackends.openForReading(directory: store.dataDir, databaseURL: try store.database())
            let blobs = BlobStore(existing: store.dataDir)
            // A database that is not this folder's (an empty one, a mistyped name) names nothing.
            let lastEvent = try reader.read { snapshot in
                let tail = try snapshot.lastPosition()
                return tail == 0 ? nil : try snapshot.events(after: tail - 1, limit: 1).last
            }
            guard let lastEvent else {
                throw StoreError(.io, "the store holds no events, so it names none of this folder's blobs: is it the store of \(store.dataDir)?")
            }
            let lastRecorded = Date(timeIntervalSince1970: lastEvent.recordedAt.epochSeconds)
            collection = try blobs.collectGarbage(minimumAge: TimeInterval(minAge), dryRun: dryRun, force: force, storeLastRecorded: lastRecorded) {
                try reader.waitForCommitsInFlight(patience: .seconds(10))
                return try reader.referencedBlobDigests()
            } movedAside: { _ in Self.pauseForTests() }
        } catch let error as ValidationError { throw error } catch { fail(error) }
        if json {
            printLine(.object([
                ("dryRun", .bool(dryRun)), ("removed", .array(collection.removed.map(JSONValue.string))),
                ("removedBlobs", .uint(UInt64(collection.removed.count))), ("removedBytes", .uint(collection.removedBytes)),
                ("namedBlobs", .uint(UInt64(collection.named))), ("namedButMissing", .uint(UInt64(collection.namedButMissing))),
                ("recentBlobs", .uint(UInt64(collection.recent))), ("failed", .array(collection.failed.map(JSONValue.string))),
            ]))
        } else {
            let verb = dryRun ? "would remove" : "removed"
            print("\(verb) \(collection.removed.count) blobs (\(StatsCommand.bytes(collection.removedBytes))) no repository names")
            print("kept \(collection.named) named blobs, and \(collection.recent) unnamed ones used within \(max(minAge, Int64(BlobClaims.shortestCollectionAge))) s")
            if collection.namedButMissing > 0 {
                print("warning: \(collection.namedButMissing) blobs the store names are missing from the folder (serve's start-up log names them)")
            }
        }
        for failure in collection.failed { StandardStreams.error("error: not removed: \(failure)\n") }
        if !collection.failed.isEmpty { throw ExitCode(2) }
    }

    private static let pauseFile = ProcessInfo.processInfo.environment[pauseVariable]

    private static func pauseForTests() {
        guard let file = pauseFile, !FileManager.default.fileExists(atPath: file + ".done") else { return }
        _ = FileManager.default.createFile(atPath: file, contents: Data("paused\n".utf8))
        while FileManager.default.fileExists(atPath: file) { usleep(20_000) }
        _ = FileManager.default.createFile(atPath: file + ".done", contents: nil)  // once
    }
}
