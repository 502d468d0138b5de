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
            removes every other blob file of the folder that no command claimed within --min-age. Every \
            command that names a blob claims it first, and a blob claimed while it is being removed is \
            put back, so it runs beside serve (on PostgreSQL, on any node, or on a machine that mounts \
            the shared folder). Staging and the log are not touched. Prints what it removed.
            """)

    @OptionGroup var store: StoreOptions
    @Option(help: "Keep a blob no one names until this many seconds after its last use: longer than any command takes between claiming a blob and committing the event that names it.")
    var minAge: Int64 = 3600
    @Flag(help: "Report what would be removed, removing nothing.") var dryRun = false
    @Flag(help: "Print the report as one JSON object, with the digests removed.") var json = false

    func validate() throws {
        guard minAge >= 0 else { throw ValidationError("--min-age must be 0 or more seconds.") }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: store.dataDir + "/blobs", isDirectory: &isFolder), isFolder.boolValue else {
            throw ValidationError("--data-dir \(store.dataDir) has no blobs folder: give the folder serve keeps its blobs in.")
        }
        if try store.database() == nil, let moved = StoreBackends.MovedToPostgreSQL.refusal(directory: store.dataDir) {
            // Its LMDB store no longer names what is pushed: every new blob would look unnamed.
            throw ValidationError(moved.message)
        }
    }

    func run() async throws {
        let collection: BlobStore.Collection
        do {
            let reader = try StoreBackends.openForReading(directory: store.dataDir, databaseURL: try store.database())
            let blobs = BlobStore(existing: store.dataDir)
            collection = try blobs.collectGarbage(minimumAge: TimeInterval(minAge), dryRun: dryRun) {
                // A database that is not this folder's (an empty one, a mistyped name) names nothing.
                guard try reader.read({ try $0.lastPosition() }) > 0 else {
                    throw StoreError(.io, "the store holds no events, so it names none of this folder's blobs: is it the store of \(store.dataDir)?")
                }
                return try reader.referencedBlobDigests()
            }
        } catch let error as ValidationError { throw error } catch { fail(error) }
        if json {
            printLine(.object([
                ("dryRun", .bool(dryRun)), ("removed", .array(collection.removed.map(JSONValue.string))),
                ("removedBlobs", .uint(UInt64(collection.removed.count))), ("removedBytes", .uint(collection.removedBytes)),
                ("namedBlobs", .uint(UInt64(collection.named))), ("recentBlobs", .uint(UInt64(collection.recent))),
            ]))
        } else {
            let verb = dryRun ? "would remove" : "removed"
            print("\(verb) \(collection.removed.count) blobs (\(StatsCommand.bytes(collection.removedBytes))) no repository names")
            print("kept \(collection.named) named blobs, and \(collection.recent) unnamed ones used within \(minAge) s")
        }
    }
}
