import ArgumentParser
import Foundation
import LMDBKit
import Logging
import UploadCore
import UploadService
import UploadStore

@main
struct UploadCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload-coordinator",
        abstract: "Coordinates container-image layer uploads the way Amazon ECR Public does, on an event log in LMDB or PostgreSQL.",
        discussion: """
            Commands act on a data directory directly. A refused command prints \
            `<ErrorName>: <message>` (ECR's name for the refusal), and a failure of the store or \
            its folder `error: <message>`, on standard error and exits 1; a flag missing or given wrong \
            prints `Error: <message>` and the usage, and exits 64. The audit commands that check \
            (`audit verify-*`) print `OK: …` or `FAILED: …`.
            """,
        version: ProductVersion.current,
        subcommands: [
            ServeCommand.self, CreateRepositoryCommand.self, DeleteRepositoryCommand.self, InitiateLayerUploadCommand.self,
            EventsCommand.self, AuditCommand.self, MigrateCommand.self, CopyStoreCommand.self, BackupCommand.self, StatsCommand.self, GarbageCollectCommand.self, DebugCommand.self,
        ]
    )

    /// As `AsyncParsableCommand`'s, but an error a subcommand's `run` throws (a `ValidationError`
    /// it can only find once it looks at the folder or the database) is shown with that
    /// subcommand's usage, not the top level's list of subcommands.
    static func main() async {
        StandardStreams.openTheMissingOnes()
        let command: any ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                var synchronous = command
                try synchronous.run()
            }
            // A listing or proof cut short by a full disk, or a reader gone, is no success.
            if let reason = StandardStreams.whyNotPrintedWhole() {
                StandardStreams.error("error: standard output could not take everything printed: \(reason)\n")
                exit(withError: ExitCode.failure)
            }
        } catch let error as ValidationError {
            let usage = usageString(for: type(of: command))
            let path = usage.split(separator: " ").prefix { !["-", "[", "<"].contains($0.first) }.joined(separator: " ")
            StandardStreams.error("Error: \(error.message)\nUsage: \(usage)\n  See '\(path) --help' for more information.\n")
            exit(withError: ExitCode.validationFailure)
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every data command shares. Flags win over environment variables, which win over defaults.
struct StoreOptions: ParsableArguments {
    @Option(help: "The data directory: the store's LMDB files, or with --database-url its blobs and staging. The commands that record refuse an LMDB folder that does not exist; `migrate` makes one.")
    var dataDir: String

    @Option(help: ArgumentHelp(
        "Keep the log, the Merkle tree and the projections in this PostgreSQL database instead of LMDB: postgres://USER[:PASS]@HOST:PORT/DB. [env: \(StoreBackends.databaseURLVariable)]"))
    var databaseUrl: String?

    @Option(help: ArgumentHelp(
        "The 12-digit id of the registry acted on. [env: \(Environment.registryId)] [default: \(StoreConfiguration.fallbackRegistryId)]"))
    var registryId: String?

    /// The flag's old name, which scripts still use.
    @Option(name: .customLong("default-registry-id"), help: .hidden)
    var defaultRegistryId: String?

    @Option(help: ArgumentHelp(
        "The partSize InitiateLayerUpload hands out, in bytes (serve, initiate-layer-upload; other commands only check it). [env: \(Environment.partSize)] [default: \(DecisionSettings.standardPartSize)]"))
    var partSize: UInt64?

    enum Environment {
        static let registryId = "UPLOAD_COORDINATOR_REGISTRY_ID"
        static let partSize = "UPLOAD_COORDINATOR_PART_SIZE"
    }

    func validate() throws {
        if registryId != nil && defaultRegistryId != nil {
            throw ValidationError("--default-registry-id is the old name of --registry-id; give one of them.")
        }
        _ = try database()
        StoreBackends.warnWhenTheEnvironmentOverrides(flag: databaseUrl, dataDirectory: dataDir)
    }

    /// The PostgreSQL database named by the flag or the environment; `nil` for LMDB.
    func database() throws -> String? { try Self.database(flag: databaseUrl) }

    static func database(flag: String?) throws -> String? {
        do { return try StoreBackends.databaseURL(flag: flag) } catch let error as StoreError { throw ValidationError("--database-url: \(error.message)") }
    }

    func settings() throws -> DecisionSettings {
        try Self.settings(registryId: registryId ?? defaultRegistryId, partSize: partSize)
    }

    /// Decision settings from flags, then environment variables, then defaults.
    static func settings(registryId flag: String?, partSize flagPartSize: UInt64?) throws -> DecisionSettings {
        let env = ProcessInfo.processInfo.environment
        let registryId = flag ?? env[Environment.registryId] ?? StoreConfiguration.fallbackRegistryId
        guard registryId.count == 12, registryId.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ValidationError("The registry id must be 12 digits, like an AWS account id; got '\(registryId)'.")
        }
        var partSize = flagPartSize ?? DecisionSettings.standardPartSize
        if flagPartSize == nil, let raw = env[Environment.partSize] {
            guard let parsed = UInt64(raw) else {
                throw ValidationError("\(Environment.partSize) must be a whole number of bytes; got '\(raw)'.")
            }
            partSize = parsed
        }
        guard (1...DecisionSettings.largestPartSize).contains(partSize) else {
            throw ValidationError("The part size must be 1 to \(DecisionSettings.largestPartSize) bytes; got \(partSize).")
        }
        return DecisionSettings(defaultRegistryId: registryId, partSize: partSize)
    }

    /// - Parameter migrating: apply pending migrations; when false, a store that needs them is refused.
    func openStore(migrating: Bool = true) throws -> any EventStore {
        if let refusal = BlobStore.storeRefusal(folder: dataDir, databaseURL: try database()) { throw ValidationError(refusal) }
        var configuration = StoreConfiguration(directory: dataDir, settings: try settings())
        configuration.migrateOnOpen = migrating
        return try StoreBackends.open(configuration, databaseURL: database(), poolSize: 2)
    }
}

/// Runs `body` against an open store, closes it, and turns failures into `<ErrorName>: <message>`.
func withStore(_ options: StoreOptions, migrating: Bool = true, _ body: (any EventStore) async throws -> Void) async throws {
    let store: any EventStore
    do { store = try options.openStore(migrating: migrating) } catch let error as ValidationError { throw error } catch { fail(error) }
    do {
        try await body(store)
    } catch {
        await store.close()
        if let usage = error as? ValidationError { throw usage }  // a flag to give: usage, exit 64
        fail(error)
    }
    await store.close()
}

/// Runs `body` against the store opened for reading only (``StoreBackends/openForReading(directory:databaseURL:unreadableProjections:)``):
/// what the auditors' commands use, so that auditing never migrates, writes or waits for a writer.
/// Projections it cannot read (never built, torn by a crash of the machine, of another binary's
/// layout) are read as empty: the commands then read the whole log, which is their evidence.
func withReader(_ options: StoreOptions, _ body: (any SnapshotReading) throws -> Void) throws {
    _ = try options.settings()  // a flag given wrong is refused, even where the reads need none
    let reader: any SnapshotReading
    do {
        reader = try StoreBackends.openForReading(directory: options.dataDir, databaseURL: options.database(), unreadableProjections: .readAsEmpty)
    } catch let error as ValidationError { throw error } catch { fail(error) }
    do { try body(reader) } catch { fail(error) }
}

/// Runs `body` against the application layer over an open store, as ``withStore(_:_:)`` does.
/// An LMDB data directory that does not exist is refused, not made: these commands record into
/// its store, and a mistyped `--data-dir` would otherwise record into a new one that no `serve`
/// reads. So is a folder that holds files but no store (a home or project folder named by
/// mistake), which it would fill with a store's files; an empty one takes a new store. `serve`
/// and `migrate` make a store in a new folder. (With `--database-url` the records go to the
/// database every node reads, and the folder, of blobs, is made as before.)
func withService(_ options: StoreOptions, _ body: (UploadService) async throws -> Void) async throws {
    if try options.database() == nil {
        let advice = "This command records into an existing store; `serve` or `migrate` makes a new one."
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: options.dataDir, isDirectory: &isFolder) else {
            throw ValidationError("--data-dir \(options.dataDir) does not exist. \(advice)")
        }
        guard isFolder.boolValue else { throw ValidationError("--data-dir \(options.dataDir) is not a folder. \(advice)") }
        if case .missingStore? = Environment.noStore(in: options.dataDir),
           let held = try? FileManager.default.contentsOfDirectory(atPath: options.dataDir), !held.isEmpty {
            throw ValidationError("--data-dir \(options.dataDir) holds files but no store (no data.mdb). \(advice)")
        }
    }
    try await withStore(options) { store in
        let service = UploadService(store: store, blobs: try BlobStore(directory: options.dataDir), logger: Logger(label: "upload-coordinator"))
        try await body(service)
    }
}

/// Prints the error and exits 1: a refused command under its API name, as the API would answer
/// it; anything else (the store, the disk, the folder) as this process's own error, which the
/// API's `ServerException` would make read as a server's fault.
func fail(_ error: any Error) -> Never {
    let line: String
    switch error {
    case let refusal as CommandError: line = refusal.description
    case let failure as StoreError: line = "error: \(failure.message)"
    default: line = "error: \(error)"
    }
    BackgroundStandardError.flush(within: 2)  // serve's log lines before its last
    StandardStreams.error(line + "\n")
    exit(1)
}

func cliMetadata() -> RequestMetadata {
    RequestMetadata(
        requestId: RandomUUIDs.next(), source: "cli",
        userAgent: "upload-coordinator/\(ProductVersion.current)")
}

func printLine(_ value: JSONValue) {
    print(value.text)
}

/// For tests that signal a command at a known point: when the environment variable `variable`
/// names a file, writes it and waits until the test removes it.
func pauseIfATestAsks(_ variable: String) async {
    guard let file = ProcessInfo.processInfo.environment[variable] else { return }
    _ = FileManager.default.createFile(atPath: file, contents: Data("paused\n".utf8))
    while FileManager.default.fileExists(atPath: file) { try? await Task.sleep(for: .milliseconds(20)) }
}
