import ArgumentParser
import Foundation
import Hummingbird
import LogHashing
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals
import UploadAPI
import UploadCore
import UploadService
import UploadStore

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve ECR Public's API (AWS JSON 1.1) for aws ecr-public and boto3, until SIGINT or SIGTERM.")

    @Option(help: "The data directory (created if missing): the store's LMDB files, or with --database-url its blobs and staging, which every node shares.") var dataDir: String
    @Option(help: ArgumentHelp("Keep the log, the Merkle tree and the projections in this PostgreSQL database, which several serve nodes may share: postgres://USER[:PASS]@HOST:PORT/DB. [env: \(StoreBackends.databaseURLVariable)]"))
    var databaseUrl: String?
    @Option(help: "With --database-url: the most connections this node's readers hold at once (the writer, the commit listener and the leader election have one each besides).")
    var databasePoolSize = 8
    @Option(help: "With --database-url: the longest, in seconds, one round trip to the database may wait for its answer before its connection is cut and the request fails with ServerException (a frozen server, a commit waiting on a lost standby). Keep it above the append lock's 30 s wait, which a batch spends waiting for other nodes' batches.")
    var databaseAnswerLimit = 60
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on; 0 picks a free one (the ready line names it).") var port = 5080
    @Option(help: ArgumentHelp("The 12-digit id of the registry served. [env: \(StoreOptions.Environment.registryId)] [default: \(StoreConfiguration.fallbackRegistryId)]"))
    var registryId: String?
    /// The data commands' old name for the flag, taken here too so that one name works everywhere.
    @Option(name: .customLong("default-registry-id"), help: .hidden) var defaultRegistryId: String?
    @Option(help: "Another name the registry answers to as registryId: 2 to 50 characters of [a-z][a-z0-9]+(?:[._-][a-z0-9]+)*. [default: r<registry id>]")
    var registryAlias: String?
    @Option(help: "The HOST[:PORT] clients push to and pull from, named in each repositoryUri and logoUrl. [default: the address listened on]")
    var publicEndpoint: String?
    @Option(help: ArgumentHelp("The partSize handed out by InitiateLayerUpload. [env: \(StoreOptions.Environment.partSize)] [default: \(DecisionSettings.standardPartSize)]"))
    var partSize: UInt64?
    @Option(help: "A credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY [REGISTRY_ID [NAME]]` per line, the user arn:aws:iam::REGISTRY_ID:user/NAME. [env: UPLOAD_COORDINATOR_CREDENTIALS]")
    var credentials: String?
    @Flag(help: "Accept unsigned requests (loopback addresses only). Without it, requests must be SigV4-signed, and registry pushes need credentials.")
    var allowAnonymous = false
    @Flag(help: "Registry pulls need credentials too (without it, anyone may pull, as from ECR Public).")
    var privatePulls = false
    @Flag(help: "A registry push to a repository that does not exist creates it (without it: NAME_UNKNOWN, as in ECR).")
    var createRepositoriesOnPush = false
    @Option(help: "The URL registry clients reach this server by, e.g. https://registry.example.com behind a TLS proxy: its token realm. [default: http:// and the Host a client used]")
    var publicUrl: String?
    @OptionGroup var logKey: LogKeyOptions
    @Option(help: "Sign a checkpoint at most this often, in seconds, while the log grows: the most GET /log/checkpoint lags the log (1 to 86400).")
    var checkpointInterval: Int64 = 1
    @Option(help: "trace, debug, info, notice, warning, error or critical; debug logs every request and batch.") var logLevel = "info"
    @Option(help: "The most uploads in progress one repository may have (LimitExceededException beyond).") var maxActiveUploads: UInt64 = 10_000
    @Option(help: "The most commands queued for the writer (ThrottlingException beyond).") var maxQueuedCommands = 20_000
    @Option(help: "End uploads with no activity for this many seconds (UploadExpired).") var uploadExpiry: Int64 = 86_400
    @Option(help: "How often, in seconds, to look for idle uploads.") var sweepInterval: Int64 = 60
    @Option(help: "On SIGTERM or SIGINT, the longest, in seconds, requests in flight may take to finish; past it, or at a second signal, they are cut off (a client sending or reading slowly), and the rest stops as always: the log signed last, the store closed with every accepted command committed.")
    var shutdownTimeout: Int64 = 30
    @Option(help: "The one region a request's SigV4 credential scope may name (InvalidSignatureException otherwise). [default: any region, the one each client is configured with]")
    var region: String?
    @Option(help: "Seconds a request head may take: from accept for a connection's first request, from its first byte after.")
    var headerTimeout: Int64 = 10
    @Option(help: "Seconds a connection may go without progress (nothing read while awaited, nothing the client reads) before it is closed.")
    var idleTimeout: Int64 = 60
    @Option(help: "The slowest a request body may arrive, in bytes per second, averaged over each 10-second window from its head on.")
    var minBodyRate = 1024
    @Option(help: "The most connections open at once; more are closed as they are accepted.") var maxConnections = 1000
    @Option(help: "The most connections open at once from one client address (an IPv6 client's /64); more are closed as they are accepted. Behind a proxy, which is one address, give it --max-connections.")
    var maxConnectionsPerAddress = 128
    @Option(help: "The most bytes of request bodies not yet authenticated spooled to DATA/spool at once (ThrottlingException beyond).")
    var maxSpooledBytes = ByteBudget.defaultSpoolBytes
    @Option(help: "The most bytes of those bodies one client address (an IPv6 client's /64) may have spooled at once (ThrottlingException beyond); by default an eighth of --max-spooled-bytes, and at least the largest body (30000000), at most the whole; below the largest body (serve warns), a larger body from one address is always refused. Behind a proxy, which is one address, give it --max-spooled-bytes.")
    var maxSpooledBytesPerAddress: Int?
    @Option(help: "The longest, in seconds, a request body not yet authenticated may take to arrive (408 beyond).")
    var maxUnsignedBodySeconds: Int64 = ECRPublicService.defaultLongestUnsignedArrival.components.seconds
    @Option(help: "The most bytes of answers held in memory at once until their clients read them (a manifest, a listing, a page); past it a read is answered ThrottlingException, the registry's 429 TOOMANYREQUESTS, or 503. At least 33554432.")
    var maxAnswerBytes = ByteBudget.defaultAnswerBytes
    @Option(help: "The most bytes of those answers one client address (an IPv6 client's /64) may have held at once; by default an eighth of --max-answer-bytes, and at least 33554432, at most the whole. Behind a proxy, which is one address, give it --max-answer-bytes.")
    var maxAnswerBytesPerAddress: Int?
    @Option(help: "Free disk space, in bytes, that layer bytes never take, so that the log can still grow when pushers have filled the rest (LimitExceededException, or the registry's TOOMANYREQUESTS, beyond); 0 keeps none.")
    var reservedDiskBytes: UInt64 = 1 << 30
    @Option(help: "The most bytes one layer upload may hold, through either API (LimitExceededException, or the registry's 413 SIZE_INVALID, beyond). The default is ECR Public's quota, 10,000 MiB.")
    var maxLayerBytes: UInt64 = BlobStore.standardMaximumLayerBytes
    @Flag(help: .hidden) var benchmarkNoopRoute = false

    /// The longest interval any time flag takes: ten years, far past any use, and far from overflow.
    static let longestSeconds: Int64 = 10 * 366 * 86_400

    func validate() throws {
        if registryId != nil && defaultRegistryId != nil {
            throw ValidationError("--default-registry-id is the old name of --registry-id; give one of them.")
        }
        if let refusal = BlobStore.storeRefusal(folder: dataDir, databaseURL: try StoreOptions.database(flag: databaseUrl)) {
            throw ValidationError(refusal)
        }
        guard (1...1000).contains(databasePoolSize) else { throw ValidationError("--database-pool-size must be 1 to 1000; got \(databasePoolSize).") }
        guard (1...86_400).contains(databaseAnswerLimit) else { throw ValidationError("--database-answer-limit must be 1 to 86400 seconds; got \(databaseAnswerLimit).") }
        for (flag, value) in [("--upload-expiry", uploadExpiry), ("--sweep-interval", sweepInterval), ("--header-timeout", headerTimeout), ("--idle-timeout", idleTimeout),
                              ("--shutdown-timeout", shutdownTimeout)] {
            guard (1...Self.longestSeconds).contains(value) else { throw ValidationError("\(flag) must be 1 to \(Self.longestSeconds) seconds; got \(value).") }
        }
        guard CheckpointSigner.intervals.contains(checkpointInterval) else {
            throw ValidationError("--checkpoint-interval must be \(CheckpointSigner.intervals.lowerBound) to \(CheckpointSigner.intervals.upperBound) seconds; got \(checkpointInterval).")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0 to 65535; got \(port).") }
        guard (0...(1 << 30)).contains(minBodyRate) else { throw ValidationError("--min-body-rate must be 0 to 1073741824 bytes per second; got \(minBodyRate).") }
        guard (1...1_000_000).contains(maxConnections) else { throw ValidationError("--max-connections must be 1 to 1000000; got \(maxConnections).") }
        guard (1...1_000_000).contains(maxConnectionsPerAddress) else {
            throw ValidationError("--max-connections-per-address must be 1 to 1000000; got \(maxConnectionsPerAddress).")
        }
        guard (1...10_000_000).contains(maxQueuedCommands) else { throw ValidationError("--max-queued-commands must be 1 to 10000000; got \(maxQueuedCommands).") }
        let smallestAnswers = ByteBudget.smallestAnswerBudget
        guard maxAnswerBytes >= smallestAnswers else { throw ValidationError("--max-answer-bytes must be at least \(smallestAnswers); got \(maxAnswerBytes).") }
        if let maxAnswerBytesPerAddress, !(smallestAnswers...maxAnswerBytes).contains(maxAnswerBytesPerAddress) {
            throw ValidationError("--max-answer-bytes-per-address must be \(smallestAnswers) to --max-answer-bytes (\(maxAnswerBytes)); got \(maxAnswerBytesPerAddress).")
        }
        guard maxSpooledBytes >= 0 else { throw ValidationError("--max-spooled-bytes must not be negative.") }
        if let maxSpooledBytesPerAddress, !(0...maxSpooledBytes).contains(maxSpooledBytesPerAddress) {
            throw ValidationError("--max-spooled-bytes-per-address must be 0 to --max-spooled-bytes (\(maxSpooledBytes)); got \(maxSpooledBytesPerAddress).")
        }
        guard maxLayerBytes > 0 else { throw ValidationError("--max-layer-bytes must be at least 1: 0 would refuse every layer.") }
        guard (1...Self.longestSeconds).contains(maxUnsignedBodySeconds) else {
            throw ValidationError("--max-unsigned-body-seconds must be 1 to \(Self.longestSeconds); got \(maxUnsignedBodySeconds).")
        }
        guard maxActiveUploads >= 1 else { throw ValidationError("--max-active-uploads must be at least 1.") }
        if let region, !SigV4Verifier.isRegionName(region) {
            throw ValidationError("--region must be a region name such as us-east-1; got '\(region)'.")
        }
        if let registryAlias, !Validation.isRegistryAlias(registryAlias) {
            throw ValidationError("--registry-alias must be 2 to 50 characters matching [a-z][a-z0-9]+(?:[._-][a-z0-9]+)*; got '\(registryAlias)'.")
        }
        if let publicEndpoint, PublicEndpoint.isHostAndPort(publicEndpoint) == false {
            throw ValidationError("--public-endpoint must be a HOST or HOST:PORT, nothing before or after it; got '\(publicEndpoint)'.")
        }
        if let publicUrl {
            let rest = publicUrl.hasPrefix("https://") ? publicUrl.dropFirst(8) : publicUrl.hasPrefix("http://") ? publicUrl.dropFirst(7) : ""
            guard !rest.isEmpty, !rest.contains("/"), rest.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "\\" }) else {
                throw ValidationError("--public-url must be http:// or https:// and a host (with an optional port), nothing after it; got '\(publicUrl)'.")
            }
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.") }
    }

    var connectionLimits: ConnectionLimits {
        var limits = ConnectionLimits()
        limits.headerTimeout = .seconds(headerTimeout)
        limits.idleTimeout = .seconds(idleTimeout)
        limits.minimumBodyBytesPerSecond = minBodyRate
        limits.maximumConnections = maxConnections
        limits.maximumConnectionsPerAddress = maxConnectionsPerAddress
        return limits
    }

    func run() async throws {
        // A reader of standard output or error gone (a pipe closed) must not end the server.
        signal(SIGPIPE, SIG_IGN)
        // Lines still held by the log's thread are written before any exit, not only a clean stop.
        atexit { BackgroundStandardError.flush(within: 2) }
        // Before anything is opened or made: out of descriptors, NIO's event loops trap as they start.
        let descriptorShortfall: (limit: rlim_t, wanted: rlim_t)?
        do { descriptorShortfall = try FileDescriptorLimit.raise(toHold: maxConnections) } catch { fail(error) }
        let keys = try ServeAuthentication.keys(credentialsFile: credentials, allowAnonymous: allowAnonymous, host: host)
        // Every logger of the process, the store's and the clocks' too, writes as serve's does: at
        // its level, one line per line, client bytes escaped.
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = DeferredMetadataLogHandler(label: label, stream: BackgroundStandardError.shared)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "upload-coordinator")
        if allowAnonymous, let credentials { logger.warning("--allow-anonymous accepts every request: the keys in \(credentials) are not checked") }
        var settings = try StoreOptions.settings(registryId: registryId ?? defaultRegistryId, partSize: partSize)
        settings.registryAlias = registryAlias
        settings.maximumActiveUploadsPerRepository = maxActiveUploads
        let metrics = ServiceMetrics()
        var configuration = StoreConfiguration(directory: dataDir, settings: settings)
        configuration.metricsFactory = metrics.factory
        configuration.maxQueuedCommands = maxQueuedCommands
        configuration.databaseAnswerLimit = .seconds(databaseAnswerLimit)
        if databaseUrl != nil || ProcessInfo.processInfo.environment[StoreBackends.databaseURLVariable] != nil, databaseAnswerLimit <= 30 {
            logger.warning("--database-answer-limit \(databaseAnswerLimit) is not above the append lock's 30 s wait: with several nodes, a batch waiting its turn is cut, and its callers get ServerException")
        }
        if let share = maxSpooledBytesPerAddress ?? (maxSpooledBytes < APIRequestContext.largestBody ? maxSpooledBytes : nil), share < APIRequestContext.largestBody {
            logger.warning("spooled bodies may hold \(share) bytes from one address, less than the largest body (\(APIRequestContext.largestBody)): a signed body larger than that is always refused with ThrottlingException")
        }
        configuration.logger = logger
        let store: any EventStore
        let blobs: BlobStore
        let logSigner: (signer: NoteSigner, identity: LogIdentity)
        var opened: (any EventStore)?  // closed if what follows the open fails: it counted as a writer
        do {
            store = try StoreBackends.open(configuration, databaseURL: try StoreOptions.database(flag: databaseUrl), poolSize: databasePoolSize)
            opened = store
            if let lmdb = store as? Store, lmdb.staleReadersCleared > 0 {
                logger.notice("cleared stale reader slots", metadata: ["readers.cleared": "\(lmdb.staleReadersCleared)"])
            }
            Self.warnOfALogAheadOfTheClock(store, logger: logger)
            var folder = try BlobStore(directory: dataDir)
            // Whose store this is, settled before the folder is changed for it: start-up removes
            // staging its store does not know (a crash's, a restore's), so a database that is not
            // this folder's (new, mistyped, another deployment's) would cost every upload in
            // progress its parts.
            if try store.read({ try $0.lastPosition() }) == 0, let kept = folder.firstKeptFile() {
                throw StoreError(.io, "the store holds no events, yet \(kept) is of a store that has some: this folder is another store's (a new or mistyped database URL?). Give the store it belongs to, or a new folder")
            }
            logSigner = try logKey.signer(dataDirectory: dataDir, registryId: settings.defaultRegistryId, store: store, claimsLog: true)
            folder.reservedDiskBytes = reservedDiskBytes
            folder.maximumLayerBytes = maxLayerBytes
            blobs = folder
            // Said once at start: every layer byte is refused until space is freed, while reads go on.
            if reservedDiskBytes > 0, let disk = Disk.bytes(of: dataDir), disk.free < reservedDiskBytes {
                logger.warning("the data folder's disk has less free space than --reserved-disk-bytes keeps; no layer bytes are taken until space is freed", metadata: [
                    "disk.free_bytes": "\(disk.free)", "disk.total_bytes": "\(disk.total)", "reserved_bytes": "\(reservedDiskBytes)"])
            }
            var folderStatus = stat()
            if stat(dataDir, &folderStatus) == 0, folderStatus.st_mode & 0o077 != 0 {
                logger.warning("other users of this machine can open the data folder, whose blobs include private repositories' layers; chmod 700 it", metadata: [
                    "folder": "\(dataDir)", "mode": "\(String(folderStatus.st_mode & 0o777, radix: 8))"])
            }
            let repaired = try blobs.reconcile(with: store)
            if !repaired.removedStaging.isEmpty || !repaired.truncatedStaging.isEmpty {
                logger.notice("staging reconciled with the log", metadata: [
                    "removed": "\(repaired.removedStaging.count)", "truncated": "\(repaired.truncatedStaging.count)"])
            }
            for problem in repaired.missing { logger.error("the log records bytes the disk lacks", metadata: ["problem": "\(problem)"]) }
            for failure in repaired.failed { logger.error("staging or a blob could not be put right; the next tidy, collection or start tries again", metadata: ["problem": "\(failure)"]) }
        } catch {
            await opened?.close()
            fail(error)
        }
        let authentication: ECRPublicService.Authentication
        do {
            let (resolved, announcement, warnings) = try ServeAuthentication.resolve(
                keys, dataDir: dataDir, clock: store.clock, registryId: settings.defaultRegistryId, region: region)
            authentication = resolved
            BackgroundStandardError.shared.write(announcement + "\n")  // in order with the log's lines
            for warning in warnings { logger.warning("\(warning)") }
        } catch {
            await store.close()
            throw error
        }
        let service = UploadService(
            store: store, blobs: blobs, logger: logger, longestUploadWait: UploadLocks.longestWait(idleTimeout: connectionLimits.idleTimeout))
        let registryFrontEnd: RegistryFrontEnd
        let checkpoints: CheckpointSigner
        do {
            let (signer, identity) = logSigner
            checkpoints = CheckpointSigner(store: store, signer: signer, origin: identity.origin, interval: .seconds(checkpointInterval))
            // What auditors pin, in the log an operator reads anyway (as `audit public-key` prints it).
            logger.notice("the transparency log's checkpoints are signed with this key; publish it for auditors", metadata: [
                "log.origin": "\(identity.origin)", "log.public_key": "\(signer.verifier.text)"])
            // Signs the passwords GetAuthorizationToken hands out and the registry's bearer tokens.
            let key = try RegistryAuthority.loadKey(at: dataDir + "/" + DataFolder.registryTokenKey)
            let authority = RegistryAuthority(
                authentication: authentication, key: key, clock: store.clock, registryId: settings.defaultRegistryId,
                privatePulls: privatePulls)
            registryFrontEnd = RegistryFrontEnd(
                service: service, authority: authority, logger: logger, metrics: metrics, createsRepositoriesOnPush: createRepositoriesOnPush,
                publicURL: publicUrl)
        } catch {
            await store.close()
            throw error
        }
        let endpoint = PublicEndpoint(publicEndpoint)
        if publicEndpoint == nil, ["0.0.0.0", "::", "[::]"].contains(host) {
            logger.warning("listening on every address without --public-endpoint: each repositoryUri names \(host), which clients cannot push to")
        }
        let listenHost = host
        let answers = ByteBudget.answers(limit: maxAnswerBytes, limitPerAddress: maxAnswerBytesPerAddress)
        let api = ECRPublicService(
            service: service, logger: logger, metrics: metrics, authentication: authentication,
            spoolBudget: .spool(limit: maxSpooledBytes, limitPerAddress: maxSpooledBytesPerAddress),
            answerBudget: answers,
            longestUnsignedArrival: .seconds(maxUnsignedBodySeconds),
            registry: registryFrontEnd, checkpoints: checkpoints, endpoint: endpoint)
        let dataDir = self.dataDir
        let registry = settings.defaultRegistryId
        if let descriptorShortfall {
            logger.warning("the open-file limit is below --max-connections plus headroom; lower --max-connections or raise the hard limit", metadata: [
                "files.limit": "\(descriptorShortfall.limit)", "files.wanted": "\(descriptorShortfall.wanted)"])
        }
        let app = Application(
            router: api.router(noopRoute: benchmarkNoopRoute),
            server: .guardedHTTP1(limits: connectionLimits, answers: answers, logger: logger, metrics: metrics),
            configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                endpoint.bound(host: listenHost, port: port)
                let line = "upload-coordinator listening on http://\(channel.localAddress?.ipAddress ?? "?"):\(port) (registry \(registry), data \(dataDir))\n"
                StandardStreams.output(line)
            },
            logger: logger)
        // One group, shut down in reverse order on SIGINT, SIGTERM or SIGHUP: the server stops accepting and
        // finishes the requests in flight (live feeds end), the sweeper and blob check stop, the
        // signer signs the log as it then stands, and the store, listed first, closes last.
        // A request that never ends (a body or a download dribbled by a slow client) would hold the
        // shutdown for as long: past --shutdown-timeout the server's requests are cut off, and the
        // rest stops in order as always.
        // SIGHUP too: a terminal closing, or an `ExecReload=kill -HUP`, ended the process
        // without this shutdown (no final checkpoint). Nothing is reloaded. Not when the
        // process was started ignoring it (`nohup`), which asked to outlive its terminal.
        let stopSignals: [UnixSignal] = [.sigterm, .sigint] + (Self.startedIgnoringHangUps ? [] : [.sighup])
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: StoreService(store)),
                .init(service: CheckpointSigning(checkpoints, logger: logger)),
                .init(service: BlobCheck(service), successTerminationBehavior: .ignore),
                .init(service: ExpirySweeper(service, idleMilliseconds: uploadExpiry * 1000, interval: .seconds(sweepInterval))),
                .init(service: StaleReaderRelease(store, logger: logger)),
                .init(service: BoundedShutdown(app, limit: .seconds(shutdownTimeout), hurriedBy: stopSignals, logger: logger)),
            ],
            gracefulShutdownSignals: stopSignals,
            logger: logger))
        do {
            try await group.run()
        } catch let error as IOError where error.description.hasPrefix("bind") {
            await store.close()
            // NIO's text names neither the address nor the cause in words.
            let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"  // an IPv6 address bracketed, as in a URL
            fail(StoreError(.io, "cannot listen on \(address): \(String(cString: strerror(error.errnoCode)))"))
        } catch {
            await store.close()
            fail(error)
        }
        logger.info("stopped; every accepted command is committed")
        BackgroundStandardError.flush(within: 2)
    }

    /// Recorded times never go back, so a log last written with a clock set ahead (a process run
    /// once under a wrong clock) stamps every event at its last time until the clock passes it,
    /// and idle uploads expire only as that time moves: said at start, where it was silent.
    static func warnOfALogAheadOfTheClock(_ store: any EventStore, logger: Logger) {
        guard let tail = try? store.read({ snapshot in try snapshot.lastPosition() }), tail > 0,
              let last = try? store.read({ snapshot in try snapshot.events(after: tail - 1, limit: 1).first?.recordedAt }) else { return }
        let ahead = last.millisecondsSinceEpoch - store.clock.now().millisecondsSinceEpoch
        guard ahead > 5 * 60_000 else { return }
        logger.warning("the log's last event is recorded later than this machine's clock: events are recorded at that time until the clock passes it, and idle uploads expire only as it moves (was an earlier run's clock set ahead?)", metadata: [
            "log.last_recorded_at": "\(last)", "clock.behind_seconds": "\(ahead / 1000)"])
    }

    /// Whether SIGHUP was ignored when the process started (`nohup`).
    static let startedIgnoringHangUps = Interrupts.isIgnored(SIGHUP)
}
