import Foundation
import ArgumentParser
import LMDBKit
import LogHashing
import Logging
import UploadCore
import UploadService
import UploadStore

struct CreateRepositoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-repository", abstract: "Create a repository (records RepositoryCreated).")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String

    func run() async throws {
        try await withService(store) { service in
            let created = try await service.createRepository(CreateRepository(repositoryName: repositoryName), cliMetadata()).created
            printLine(.object([
                ("registryId", .string(created.registryId)),
                ("repositoryName", .string(created.repositoryName)),
                ("createdAt", .string(created.createdAt.iso8601)),
            ]))
        }
    }
}

struct DeleteRepositoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-repository",
        abstract: "Delete a repository (records RepositoryDeleted, after UploadAborted for each upload in progress and, with --force, ImageDeleted for each image).")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String
    @Flag(help: "Delete even when it holds images, deleting them too. Uploads in progress are aborted either way.") var force = false

    func run() async throws {
        try await withService(store) { service in
            let removed = try await service.deleteRepository(DeleteRepository(repositoryName: repositoryName, force: force), cliMetadata())
            printLine(.object(sorting: [
                ("registryId", .string(removed.repository.registryId)), ("repositoryName", .string(removed.repository.repositoryName)),
                ("abortedUploads", .array(removed.abortedUploads.map(JSONValue.string))),
            ]))
        }
    }
}

struct InitiateLayerUploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "initiate-layer-upload",
        abstract: "Start a layer upload, as ECR Public's InitiateLayerUpload; prints {\"uploadId\":…,\"partSize\":…}.")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String

    func run() async throws {
        try await withService(store) { service in
            let started = try await service.initiateLayerUpload(InitiateLayerUpload(repositoryName: repositoryName), cliMetadata())
            printLine(.object([("uploadId", .string(started.uploadId)), ("partSize", .uint(started.partSize))]))
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print the log as one JSON object per line: position, type, version, recordedAt, metadata, data, and leafHash (as the /events feed).")

    @OptionGroup var store: StoreOptions
    @Option(help: "Print only events after this position.") var after: UInt64 = 0
    @Option(help: "The leafHash printed with the event at --after: refused unless the log still holds that event there (a restore or a failover took it back).")
    var leafHash: String?
    @Option(help: "Print at most this many events.") var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative.") }
        if let leafHash, Hex.decode(leafHash)?.count != 32 { throw ValidationError("--leaf-hash must be 64 hexadecimal digits, as a line's leafHash; got '\(leafHash.prefix(80))'.") }
        if leafHash != nil, after == 0 { throw ValidationError("--leaf-hash names the event at --after, and there is none at position 0.") }
    }

    func run() async throws {
        try withReader(store) { store in
            // Pages, bounded in count and bytes, so that a long log streams in bounded memory from
            // short read transactions.
            // A position past the tail is refused, as the feeds refuse it: the log does not hold
            // what was read up to it (a restore, a failover), which printing nothing would hide.
            do {
                try store.read { try $0.checkCursor(after: after, leaf: leafHash.flatMap(Hex.decode)) }
            } catch LogCursorRefusal.pastTheEnd(let tail) {
                throw CommandError(.invalidParameter, "--after \(after) is past the log's last position \(tail): this log does not hold the events read up to it (it was restored, or failed over); read again from a position it holds")
            } catch LogCursorRefusal.takenBack {
                throw CommandError(.invalidParameter, "the event at position \(after) is not the one whose --leaf-hash was given: this log no longer holds the event read there (it was restored, or failed over); read again from a position it holds")
            }
            var position = after
            // The leaf of the last event printed: each page's snapshot must still hold it there, or
            // the pages would join two histories (a failover that lost commits, or a restore,
            // between them), dense and gap-free to the eye.
            var lastLeaf = leafHash.flatMap(Hex.decode)
            var remaining = limit ?? .max
            var leavesMissing = false
            var pageSize = 1000
            while remaining > 0 {
                let (page, leaves): ([EventEnvelope], [[UInt8]])
                do {
                    (page, leaves) = try store.read { snapshot in
                        try snapshot.checkCursor(after: position, leaf: lastLeaf)
                        let page = try snapshot.events(after: position, limit: min(remaining, pageSize), byteBudget: EventEnvelope.pageBytes)
                        // Read apart from the events: a tree missing a leaf throws, and the events
                        // are printed all the same.
                        return (page, (try? snapshot.merkleNodes(level: 0, indices: position..<position + UInt64(page.count))) ?? [])
                    }
                } catch let error as StoreError where error.code == .corrupt && pageSize > 1 {
                    pageSize = 1  // a record that does not decode: the events before it, one at a time, then its error
                    continue
                } catch is LogCursorRefusal {
                    throw CommandError(.invalidParameter, "the log no longer holds the event printed at position \(position) (it was restored, or failed over while it was read): what was printed after \(after) is not all one history; read again from a position it holds")
                }
                // A tree that lacks their leaves (a damaged store, which this tool must still
                // print) gives lines without them, said once.
                if leaves.count != page.count, !leavesMissing {
                    leavesMissing = true
                    StandardStreams.error("warning: the Merkle tree lacks the leaves of events after \(position): they are printed without leafHash; run upload-replay\n")
                }
                for (index, envelope) in page.enumerated() {
                    printLine(leaves.count == page.count ? envelope.json(adding: [("leafHash", .string(Hex.encode(leaves[index])))]) : envelope.json)
                }
                guard let last = page.last else { break }
                position = last.position
                lastLeaf = leaves.count == page.count ? leaves.last : nil
                remaining -= page.count
            }
        }
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply pending store migrations and bring the projections up to date.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        try await withStore(store) { store in
            let new = store.migrationsAppliedAtOpen
            print(new.isEmpty ? "up to date at \(try store.appliedMigrations().last ?? "no migration")" : new.map { "applied \($0)" }.joined(separator: "\n"))
            if let layout = store.projectionLayoutReplacedAtOpen {
                print("rebuilt the projections from layout \(layout) to \(Projector.version): processes of the older binary no longer write this store")
            }
        }
    }
}

struct CopyStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-store",
        abstract: "Copy a store into a new, empty one, between LMDB and PostgreSQL: every event at its position, byte for byte, and every signed checkpoint; the Merkle root is checked equal.",
        discussion: """
            Give one source (--from-data-dir, or --from-database-url: the copy takes the log and \
            checkpoints only, so a database's blobs' folder need not be named) and one destination (--to-data-dir, a new or empty folder, or \
            --to-database-url). The blobs and staging stay in their folder: serve a PostgreSQL copy \
            with the source's --data-dir; into an LMDB copy's new folder, copy the source folder's \
            blobs, staging, keys and page-sign-outs. An LMDB folder moved to PostgreSQL is refused while a \
            process of this version or later has its store open to write (stop serving it first: an \
            older one does not say it writes), and none opens it to write once moved; a copy from a \
            served database is what it held when the copy started.
            """)

    @Option(help: "The source's data directory (its LMDB store, or with --from-database-url its blobs).") var fromDataDir: String?
    @Option(help: "The source's PostgreSQL database.") var fromDatabaseUrl: String?
    @Option(help: "The destination's data directory (a new LMDB store).") var toDataDir: String?
    @Option(help: "The destination's PostgreSQL database, holding no events yet.") var toDatabaseUrl: String?

    /// For tests: a file the copy writes once its destination is open, then waits for it to be removed.
    static let pauseVariable = "UPLOAD_COORDINATOR_TEST_COPY_PAUSE_FILE"

    func validate() throws {
        guard fromDataDir != nil || fromDatabaseUrl != nil else { throw ValidationError("Give the source: --from-data-dir or --from-database-url.") }
        guard (toDataDir == nil) != (toDatabaseUrl == nil) else { throw ValidationError("Give one destination: --to-data-dir or --to-database-url.") }
        for url in [fromDatabaseUrl, toDatabaseUrl].compactMap({ $0 }) { _ = try StoreOptions.database(flag: url) }
        if fromDatabaseUrl == nil, toDataDir != nil, fromDataDir == toDataDir { throw ValidationError("The source and the destination are the same store.") }
        if let url = fromDatabaseUrl, url == toDatabaseUrl { throw ValidationError("The source and the destination are the same store.") }
        // As backup judges its --to: a usage error, before anything is opened.
        if let toDataDir, let refusal = StoreBackup.refusal(destination: toDataDir, dataDirectory: fromDatabaseUrl == nil ? fromDataDir : nil) {
            throw ValidationError("--to-data-dir: \(refusal).")
        }
    }

    func run() async throws {
        PartialFolder.removeOnInterrupt()
        let settings = try StoreOptions.settings(registryId: nil, partSize: nil)
        let sourceDirectory = fromDataDir ?? FileManager.default.temporaryDirectory.path
        // The source is only read (an LMDB folder opened read-only, a database through one
        // read-only connection), never migrated, and its projections never rebuilt: the copy
        // takes its log and signed checkpoints, and its projections are built from them. (An LMDB
        // source copied into PostgreSQL is then given a note that it moved: MovedToPostgreSQL.)
        let source: any SnapshotReading
        // A move to PostgreSQL must take every write the folder's store was given: none may write
        // it from before the snapshot until the note that it moved is left (Store.writersLock).
        var writersHeldOff: FileLock?
        defer { writersHeldOff?.release() }
        do {
            if toDatabaseUrl != nil, fromDatabaseUrl == nil, let fromDataDir, Environment.noStore(in: fromDataDir) == nil {
                guard let lock = try Store.writersLock(in: fromDataDir, exclusive: true) else {
                    throw StoreError(.io, "a process has the store in \(fromDataDir) open to write (serve, or a data command): stop it first, so that the copy takes every write it was given")
                }
                writersHeldOff = lock
            }
            source = try StoreBackends.openForReading(directory: sourceDirectory, databaseURL: fromDatabaseUrl, unreadableProjections: .readAsEmpty)
        } catch { fail(error) }
        // The destination is checked before anything is written to it, or migrated. An LMDB copy
        // is built beside its place and renamed into it once whole; a database is marked as an
        // unfinished copy until then (StoreCopy).
        let destination: any EventStore
        var partial: PartialFolder?
        do {
            if let toDatabaseUrl {
                if let held = try PostgresStore.heldLog(url: toDatabaseUrl) { throw StoreCopy.holdsALogRefusal(held) }
                destination = try StoreBackends.open(StoreConfiguration(directory: sourceDirectory, settings: settings), databaseURL: toDatabaseUrl, poolSize: 2)
            } else {
                let target = toDataDir!
                if let refusal = StoreBackup.refusal(destination: target, dataDirectory: fromDatabaseUrl == nil ? sourceDirectory : nil) { throw StoreError(.io, refusal) }
                partial = try PartialFolder(beside: target)
                for folder in partial!.abandonedRemoved {
                    StandardStreams.error("removed an interrupted copy's folder: \(folder)\n")
                }
                var configuration = StoreConfiguration(directory: partial!.path, settings: settings)
                // The copy says itself what failed, and a folder whose copy failed is removed: the
                // store's own lines about its future (rebuilt projections) would be about none.
                configuration.logger.logLevel = .critical
                destination = try Store(configuration)
            }
        } catch {
            let explained = partial.map { Disk.explaining(error, writingIn: $0.path) } ?? error
            partial?.discard()
            fail(abandoned(explained, hadFolder: partial != nil))
        }
        await pauseIfATestAsks(Self.pauseVariable)
        let result = Result { try StoreCopy.copy(from: source, to: destination) }.mapError { error in partial.map { Disk.explaining(error, writingIn: $0.path) } ?? error }
        await destination.close()
        do {
            let report = try result.get()
            try partial?.publish()
            if let toDatabaseUrl, fromDatabaseUrl == nil, let fromDataDir {
                // The copy is whole either way: a folder that cannot be written only goes unmarked.
                do { try StoreBackends.MovedToPostgreSQL.leave(in: fromDataDir, databaseURL: toDatabaseUrl) } catch {
                    let warning = "warning: the copy is whole, but \(fromDataDir)/\(StoreBackends.MovedToPostgreSQL.fileName) could not be written (\(error)): nothing stops a node from serving the folder's old LMDB store\n"
                    StandardStreams.error(warning)
                }
            }
            printLine(.object([
                ("events", .number(String(report.events))), ("signedCheckpoints", .number(String(report.signedCheckpoints))),
                ("rootHash", .string(report.merkleRoot)),
            ]))
        } catch {
            partial?.discard()
            if let toDatabaseUrl, case .failure(let failure) = result, !StoreCopy.refusedForAnotherCopy(failure),
               (try? PostgresStore.holdsAnUnfinishedCopy(url: toDatabaseUrl)) == true {
                // The database keeps what was copied, marked (StoreCopy): say what to do with it.
                StandardStreams.error("""
                    error: the copy did not finish; the database at \(StoreBackends.shown(toDatabaseUrl)) holds part of it, marked \
                    as unfinished, and nothing opens it: drop that database (or everything in it) and copy again

                    """)
            }
            fail(abandoned(error, hadFolder: partial != nil))
        }
    }

    /// `error`, said of the copy to an LMDB folder when one was begun: it did not finish, and the
    /// folder it was built in is gone (a full destination's disk, say), so nothing of it is kept.
    private func abandoned(_ error: any Error, hadFolder: Bool) -> any Error {
        guard hadFolder, let toDataDir else { return error }
        let reason = (error as? StoreError)?.message ?? "\(error)"
        return StoreError(.io, "the copy to \(toDataDir) did not finish, and nothing of it is kept: \(reason)")
    }
}
