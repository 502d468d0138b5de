import ArgumentParser
import Foundation
import Hummingbird
import Logging
import UploadAPI
import UploadCore
import UploadStore

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve ECR Public's API (AWS JSON 1.1) for aws ecr-public and boto3, until SIGINT or SIGTERM.")

    @Option(help: "The data directory (created if missing).") var dataDir: String
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on; 0 picks a free one (the ready line names it).") var port = 5080
    @Option(help: ArgumentHelp("The 12-digit id of the registry served. [env: \(StoreOptions.Environment.registryId)] [default: \(StoreConfiguration.fallbackRegistryId)]"))
    var registryId: String?
    @Option(help: "Another name the registry answers to as registryId. [default: r<registry id>]") var registryAlias: String?
    @Option(help: ArgumentHelp("The partSize handed out by InitiateLayerUpload. [env: \(StoreOptions.Environment.partSize)] [default: \(DecisionSettings.standardPartSize)]"))
    var partSize: UInt64?
    @Option(help: "A credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY [REGISTRY_ID]` per line. [env: UPLOAD_COORDINATOR_CREDENTIALS]")
    var credentials: String?
    @Flag(help: "Accept unsigned requests (loopback addresses only). Without it, requests must be SigV4-signed.")
    var allowAnonymous = false
    @Option(help: "trace, debug, info, notice, warning, error or critical; debug logs every request and batch.") var logLevel = "info"
    @Option(help: "The most uploads in progress one repository may have (LimitExceededException beyond).") var maxActiveUploads: UInt64 = 10_000
    @Option(help: "The most commands queued for the writer (ThrottlingException beyond).") var maxQueuedCommands = 20_000
    @Option(help: "End uploads with no activity for this many seconds (UploadExpired).") var uploadExpiry: Int64 = 86_400
    @Option(help: "How often, in seconds, to look for idle uploads.") var sweepInterval: Int64 = 60
    @Flag(help: .hidden) var benchmarkNoopRoute = false

    func validate() throws {
        guard uploadExpiry > 0, sweepInterval > 0 else { throw ValidationError("--upload-expiry and --sweep-interval must be positive.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.") }
    }

    func run() async throws {
        var logger = Logger(label: "upload-coordinator")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var settings = try StoreOptions.settings(registryId: registryId, partSize: partSize)
        settings.registryAlias = registryAlias
        settings.maximumActiveUploadsPerRepository = maxActiveUploads
        let metrics = ServiceMetrics()
        var configuration = StoreConfiguration(directory: dataDir, settings: settings)
        configuration.metricsFactory = metrics.factory
        configuration.maxQueuedCommands = maxQueuedCommands
        configuration.logger = logger
        let store: Store
        let blobs: BlobStore
        do {
            store = try Store(configuration)
            if store.staleReadersCleared > 0 {
                logger.notice("cleared stale reader slots", metadata: ["readers.cleared": "\(store.staleReadersCleared)"])
            }
            blobs = try BlobStore(directory: dataDir)
            let repaired = try blobs.reconcile(with: store)
            if !repaired.removedStaging.isEmpty || !repaired.truncatedStaging.isEmpty {
                logger.notice("staging reconciled with the log", metadata: [
                    "removed": "\(repaired.removedStaging.count)", "truncated": "\(repaired.truncatedStaging.count)"])
            }
            for problem in repaired.missing { logger.error("the log records bytes the disk lacks", metadata: ["problem": "\(problem)"]) }
        } catch {
            fail(error)
        }
        let authentication: ECRPublicService.Authentication
        do {
            let (resolved, announcement) = try ServeAuthentication.resolve(
                credentialsFile: credentials, allowAnonymous: allowAnonymous, host: host, dataDir: dataDir,
                clock: configuration.clock, registryId: settings.defaultRegistryId)
            authentication = resolved
            FileHandle.standardError.write(Data((announcement + "\n").utf8))
        } catch {
            await store.close()
            throw error
        }
        let service = ECRPublicService(store: store, blobs: blobs, logger: logger, metrics: metrics, authentication: authentication)
        let dataDir = self.dataDir
        let registry = settings.defaultRegistryId
        let app = Application(
            router: service.router(noopRoute: benchmarkNoopRoute),
            configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                let line = "upload-coordinator listening on http://\(channel.localAddress?.ipAddress ?? "?"):\(port) (registry \(registry), data \(dataDir))\n"
                FileHandle.standardOutput.write(Data(line.utf8))
            },
            logger: logger)
        let blobCheck = Task.detached {
            do {
                let problems = try blobs.missingBlobs(in: store)
                for problem in problems.prefix(20) { logger.error("the log records a layer the disk lacks", metadata: ["problem": "\(problem)"]) }
                if problems.count > 20 { logger.error("more layers lack their blobs", metadata: ["count": "\(problems.count)"]) }
            } catch {
                logger.error("could not check the layers' blobs", metadata: ["error": "\(error)"])
            }
        }
        let sweeper = Task { [uploadExpiry, sweepInterval] in
            await service.runExpirySweeper(idleMilliseconds: uploadExpiry * 1000, interval: .seconds(sweepInterval))
        }
        // runService handles SIGINT and SIGTERM: it stops accepting, finishes requests in flight, and returns.
        do {
            try await app.runService()
        } catch {
            sweeper.cancel()
            await store.close()
            fail(error)
        }
        sweeper.cancel()
        blobCheck.cancel()
        _ = await sweeper.value
        _ = await blobCheck.value
        await store.close()
        logger.info("stopped; every accepted command is committed")
    }
}
