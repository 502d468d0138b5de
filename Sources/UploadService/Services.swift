import Foundation
public import Logging
public import ServiceLifecycle
public import UnixSignals
public import UploadStore

/// `service` (the HTTP server) given at most `limit`, once the group's graceful shutdown reaches
/// it, to finish what it is doing: past that, or at a second of the `hurriedBy` signals (an
/// operator's second Ctrl-C, an init system's second SIGTERM), its task is cancelled (requests
/// still running, a chunk or a download a slow client dribbles, are cut off), and the group's
/// other services then shut down in their order as always. A bound on the whole group would cancel
/// them all at once, the store's close beside the log's last signature; a second signal never
/// skips that order, so it loses nothing already answered.
public struct BoundedShutdown<S: Service>: Service {
    let service: S
    let limit: Duration
    let hurriedBy: [UnixSignal]
    let logger: Logger

    public init(_ service: S, limit: Duration, hurriedBy: [UnixSignal], logger: Logger) {
        self.service = service
        self.limit = limit
        self.hurriedBy = hurriedBy
        self.logger = logger
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            group.addTask {
                // Task-local, so the child sees the group's shutdown begin; cancelled (the service
                // ended first), it just ends.
                guard (try? await gracefulShutdown()) != nil else { return }
                // Trapped from here on: the group's own handler took the first signal and stops
                // listening, so without this a second one would be ignored. Before the notice, so
                // that a second signal sent once it is read is never missed.
                let signals = await UnixSignalsSequence(trapping: hurriedBy)
                // Said at once: a client that holds the shutdown (a slow reader) would otherwise
                // leave the operator looking at nothing for the whole bound.
                logger.notice("stopping: no new connections; the requests in flight may finish (a second signal cuts them off)", metadata: ["bound.seconds": "\(limit.components.seconds)"])
                let hurried = await withTaskGroup(of: UnixSignal?.self) { wait in
                    wait.addTask { try? await Task.sleep(for: limit); return nil }
                    wait.addTask { for await signal in signals { return signal }; return nil }
                    defer { wait.cancelAll() }
                    return await wait.next() ?? nil
                }
                // Cancelled: the service ended first, within its bound, and nothing was cut off.
                guard !Task.isCancelled else { return }
                if let hurried {
                    logger.warning("a second signal: requests still running are cut off", metadata: ["signal": "\(hurried)"])
                } else {
                    logger.warning("requests still running when the shutdown's bound passed are cut off", metadata: ["bound.seconds": "\(limit.components.seconds)"])
                }
            }
            // The service's end (or the bound's) ends both: what is left is cancelled.
            try await group.next()
            group.cancelAll()
        }
    }
}

/// The store's lifecycle as a service: it runs until the group shuts down, then writes every
/// command already submitted and closes the store. List it first in its `ServiceGroup`, so that it
/// shuts down last, after the front ends have finished their requests.
public struct StoreService: Service {
    let store: any EventStore

    public init(_ store: any EventStore) { self.store = store }

    public func run() async throws {
        try? await gracefulShutdown()
        await store.close()
    }
}

/// Ends idle uploads every `interval` (``UploadService/expireIdleUploads(idleMilliseconds:)``)
/// until the group shuts down; at most every ``tidyingInterval`` it also removes what staging
/// holds for uploads that have ended (``BlobStore/reconcile(with:tidyingOnly:)``, which leaves
/// alone any file a writer holds): a completion or a sweep whose commit's outcome was unknown,
/// whose caller never came back, leaves its file behind. Every `interval`, on every node, it also
/// puts back what a blob collection killed part way left moved aside
/// (``BlobStore/restoreAfterAKilledCollection(heldOff:)``), which costs a look for its mark unless one is there.
public struct ExpirySweeper: Service {
    let service: UploadService
    let idleMilliseconds: Int64
    let interval: Duration

    public init(_ service: UploadService, idleMilliseconds: Int64, interval: Duration) {
        self.service = service
        self.idleMilliseconds = idleMilliseconds
        self.interval = interval
    }

    /// The least time between two tidyings of staging: each reads the session of every upload
    /// with a staging file, a round trip each on PostgreSQL.
    public static let tidyingInterval = Duration.seconds(600)

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var tidied: ContinuousClock.Instant?
            var led: Bool?
            while !Task.isCancelled {
                do {
                    // One node sweeps where several share a store; the others look again next time.
                    let store = service.store
                    let leads = try await UploadService.blocking { store.leads(.expirySweep) }
                    if leads != led {
                        // The leader's expiry is the one in force: said when the lead moves, so
                        // that nodes given different settings do not differ silently.
                        led = leads
                        if leads {
                            service.logger.notice("this node sweeps idle uploads", metadata: [
                                "expiry.idle_seconds": "\(idleMilliseconds / 1000)", "expiry.sweep_interval_seconds": "\(interval.components.seconds)"])
                        } else {
                            // Or the database cannot be asked now (which the store logs): then none does.
                            service.logger.notice("this node does not sweep idle uploads now: another node does, with its own --upload-expiry (give every node the same), or none can until the database answers")
                        }
                    }
                    let blobs = service.blobs
                    // A look for its mark, here; the bulk pool (which whole layers may keep busy) only to put back.
                    for failure in blobs.killedCollectionLeftItsMark ? try await UploadService.bulk({ blobs.restoreAfterAKilledCollection() }) : [] {
                        service.logger.error("a blob a killed collection moved aside could not be put back; the next sweep tries again", metadata: ["problem": "\(failure)"])
                    }
                    let expired = leads ? try await service.expireIdleUploads(idleMilliseconds: idleMilliseconds) : []
                    if !expired.isEmpty { service.logger.info("expired idle uploads", metadata: ["count": "\(expired.count)"]) }
                    if leads, tidied.map({ ContinuousClock.now - $0 >= Self.tidyingInterval }) ?? true {
                        tidied = ContinuousClock.now
                        let result = try await UploadService.bulk { try blobs.reconcile(with: store, tidyingOnly: true) }
                        if !result.removedStaging.isEmpty || !result.truncatedStaging.isEmpty {
                            service.logger.info("staging tidied", metadata: [
                                "removed": "\(result.removedStaging.count)", "truncated": "\(result.truncatedStaging.count)",
                            ])
                        }
                        for failure in result.failed {
                            service.logger.error("a staging file could not be cut back to the log; the next tidy tries again", metadata: ["problem": "\(failure)"])
                        }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    // The error may advise callers how to retry; the sweeper's retry is its next
                    // sweep, decided afresh at the log's tail (an expiry kept is not made twice).
                    service.logger.error("the expiry sweep failed; the next sweep decides again from the log's tail", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// Every ``interval``, releases the reader slots of processes that died holding one in an LMDB
/// store (``Store/clearStaleReaders()``); nothing to do on PostgreSQL. LMDB reuses no page freed
/// after a reader's snapshot while its slot stands: the slot of a `backup` killed mid-copy made
/// the live files grow with every write (10 MB to 256 MB in 30 s of load) until some process next
/// opened the store.
public struct StaleReaderRelease: Service {
    let store: any EventStore
    let logger: Logger

    public init(_ store: any EventStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public static let interval = Duration.seconds(10)

    public func run() async throws {
        if let lmdb = store as? Store {
            await cancelWhenGracefulShutdown {
                while (try? await Task.sleep(for: Self.interval)) != nil {
                    let cleared = lmdb.clearStaleReaders()
                    if cleared > 0 { logger.notice("cleared stale reader slots", metadata: ["readers.cleared": "\(cleared)"]) }
                }
            }
        }
        // Returns only at its own turn in a shutdown, as ``BlobCheck`` does.
        try? await gracefulShutdown()
    }
}

/// Checks once, after start-up, that every completed layer's blob is on disk, and logs the ones
/// that are not (there should be none). Stops early when the group shuts down, and otherwise
/// waits for it.
public struct BlobCheck: Service {
    let service: UploadService

    public init(_ service: UploadService) { self.service = service }

    public func run() async throws {
        let (blobs, store, logger) = (service.storage, service.store, service.logger)
        await cancelWhenGracefulShutdown {
            do {
                // On a thread of its own: it reads the whole history (on PostgreSQL, a round trip a
                // page), which would hold one of the cooperative pool's few threads for as long.
                let stopped = Locked(false)
                let problems = try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        NamedThread.start("uc-blob-check") { continuation.resume(with: Result { try blobs.missingBlobs(in: store, stopped: { stopped.withLock { $0 } }) }) }
                    }
                } onCancel: { stopped.withLock { $0 = true } }
                for problem in problems.prefix(20) { logger.error("the log records a blob the disk lacks", metadata: ["problem": "\(problem)"]) }
                if problems.count > 20 { logger.error("more blobs the log records are missing", metadata: ["count": "\(problems.count)"]) }
            } catch {
                logger.error("could not check the blobs the log records", metadata: ["error": "\(error)"])
            }
        }
        // Done early, it still returns only at its own turn in a shutdown: a service of the group
        // that returns while others drain makes ServiceLifecycle cancel them all.
        try? await gracefulShutdown()
    }
}
