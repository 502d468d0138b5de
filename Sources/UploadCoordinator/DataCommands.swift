import ArgumentParser
import UploadCore
import UploadStore

struct CreateRepositoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-repository", abstract: "Create a repository (records RepositoryCreated).")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String
    @Option(help: "The registry to create it in; the default registry when omitted.") var registryId: String?

    func run() async throws {
        try await withStore(store) { store in
            let command = try CreateRepository(registryId: registryId, repositoryName: repositoryName)
            let outcome = try await store.execute(.createRepository(command), metadata: cliMetadata())
            guard case .repositoryCreated(let created)? = outcome.events.first?.event else { return }
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
        abstract: "Delete a repository (records RepositoryDeleted, after UploadAborted for each upload in progress when --force).")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String
    @Option var registryId: String?
    @Flag(help: "Delete even with uploads in progress, aborting them.") var force = false

    func run() async throws {
        try await withStore(store) { store in
            let command = try DeleteRepository(registryId: registryId, repositoryName: repositoryName, force: force)
            let outcome = try await store.execute(.deleteRepository(command), metadata: cliMetadata())
            printLine(.object([("eventsRecorded", .uint(UInt64(outcome.events.count)))]))
        }
    }
}

struct InitiateLayerUploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "initiate-layer-upload",
        abstract: "Start a layer upload, as ECR Public's InitiateLayerUpload; prints {\"uploadId\":…,\"partSize\":…}.")

    @OptionGroup var store: StoreOptions
    @Option var repositoryName: String
    @Option(help: "The registry id or alias; the default registry when omitted.") var registryId: String?

    func run() async throws {
        try await withStore(store) { store in
            let command = try InitiateLayerUpload(registryId: registryId, repositoryName: repositoryName)
            let (uploadId, partSize) = try await store.initiateLayerUpload(command, metadata: cliMetadata())
            printLine(.object([("uploadId", .string(uploadId)), ("partSize", .uint(partSize))]))
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print the log as one JSON object per line: position, type, version, recordedAt, metadata, data.")

    @OptionGroup var store: StoreOptions
    @Option(help: "Print only events after this position.") var after: UInt64 = 0
    @Option(help: "Print at most this many events.") var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative.") }
    }

    func run() async throws {
        try await withStore(store) { store in
            // Pages, so that a long log streams in bounded memory from short read transactions.
            var position = after
            var remaining = limit ?? .max
            while remaining > 0 {
                let page = try store.read { try $0.events(after: position, limit: min(remaining, 1000)) }
                for envelope in page { printLine(envelope.json) }
                guard let last = page.last else { break }
                position = last.position
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
        let before: [String]
        do { before = try Store.appliedMigrations(directory: store.dataDir) } catch { fail(error) }
        try await withStore(store) { store in
            let after = try store.appliedMigrations()
            let new = after.filter { !before.contains($0) }
            print(new.isEmpty ? "up to date at \(after.last ?? "no migration")" : new.map { "applied \($0)" }.joined(separator: "\n"))
        }
    }
}
