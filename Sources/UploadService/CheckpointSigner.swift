import Foundation
public import LogHashing
public import Logging
import NIOPosix
public import ServiceLifecycle
import UploadCore
public import UploadStore

/// Signs the log's checkpoints (C2SP tlog-checkpoint in a signed note) and keeps each one signed
/// in the store: at most one per `interval`, only when the log has grown, and never one whose tree
/// does not extend the last checkpoint kept (a log that signed both would be caught equivocating).
public actor CheckpointSigner {
    public nonisolated let identity: LogIdentity
    /// The longest a served checkpoint may lag the log: also the shortest time between two signings.
    public nonisolated let interval: Duration
    private let store: any EventStore
    private let signer: NoteSigner
    private var latest: Served?
    private var signing: Task<(SignedCheckpoint, ContinuousClock.Instant), any Error>?
    /// The last signing's failure, and when: for ``failureBackoff``, callers get it again rather
    /// than start another signing (the endpoint is open; during an outage each would be a write).
    private var lastFailure: (error: any Error, at: ContinuousClock.Instant)?
    /// How long a failed signing is answered again: the interval, but never more than 5 s, so that
    /// a blip does not outlive itself by an hour-long interval.
    private var failureBackoff: Duration { min(interval, .seconds(5)) }
    /// How many signings this signer started: for tests of callers sharing one.
    package private(set) var signingsStarted = 0

    /// The bounds of `interval`: at most one signature a second, and at least one a day.
    public static let intervals: ClosedRange<Int64> = 1...86_400

    public init(store: any EventStore, signer: NoteSigner, origin: String, interval: Duration = .seconds(1)) {
        self.store = store
        self.signer = signer
        identity = LogIdentity(verifier: signer.verifier, origin: origin)
        self.interval = interval
    }

    /// The newest checkpoint, signed now when the one at hand was read from the log `interval` ago
    /// or more. Callers arriving while one is signed wait for it; one too old for them that read
    /// the log after they arrived is still taken (no signing could be fresher), so a caller waits
    /// for at most two signings, and only one runs at a time however many ask.
    public func current() async throws -> SignedCheckpoint {
        if let cached = latest, ContinuousClock.now - cached.readAt < interval {
            // Another process or node on this log may have kept a newer one since: a client sent
            // to each in turn must never see the tree shrink. (Unread, the one at hand stands.)
            let seenAt = ContinuousClock.now
            if let kept = try? await store.reading({ try $0.latestSignedCheckpoint() }), kept.size > cached.checkpoint.size,
               (try? identity.check(kept)) != nil {
                return served(kept, readAt: cached.readAt, seenAt: seenAt)
            }
            return latest?.checkpoint ?? cached.checkpoint  // another caller's signing may have ended meanwhile
        }
        // Not the checkpoint kept last instead: a signing that failed may have found that the log
        // no longer extends it, and serving it would hide exactly that.
        if let failure = lastFailure, ContinuousClock.now - failure.at < failureBackoff { throw failure.error }
        // Join a signing under way; one found too old once it ends makes the first caller back
        // sign again and the others join that one, so that a crowd of callers (the endpoint is
        // open) never starts a signing each.
        let arrived = ContinuousClock.now
        while let pending = signing {
            let (checkpoint, readAt) = try await pending.value
            if readAt >= arrived || ContinuousClock.now - readAt < interval { return served(checkpoint, readAt: readAt, seenAt: readAt) }
            guard let now = signing, now != pending else { break }
        }
        return try await signNow()
    }

    /// Signs the log as it stands now, whatever the interval: at shutdown, so that a log stopped
    /// cleanly has every event under a signature (edits made while it is down are then caught).
    public func signLast() async throws -> SignedCheckpoint { try await signNow() }

    private func signNow() async throws -> SignedCheckpoint {
        let (store, signer, identity) = (self.store, self.signer, self.identity)
        let task = Task {
            try await NIOThreadPool.singleton.runIfActive {
                // The log is read after this instant: the checkpoint is at most this old.
                let readAt = ContinuousClock.now
                return (try Self.sign(store, signer, as: identity), readAt)
            }
        }
        signing = task
        signingsStarted += 1
        defer { if signing == task { signing = nil } }
        do {
            let (checkpoint, readAt) = try await task.value
            lastFailure = nil
            return served(checkpoint, readAt: readAt, seenAt: readAt)
        } catch {
            // A full queue is the moment's, not the log's: the next caller tries again.
            if (error as? StoreError)?.code != .overloaded { lastFailure = (error, ContinuousClock.now) }
            throw error
        }
    }

    /// The checkpoint served, with when the log it reflects was read (how fresh it is: a
    /// checkpoint another node kept counts as old as the one it replaced) and when this signer
    /// learned of it (which of two is the later word on the log).
    struct Served: Equatable {
        var checkpoint: SignedCheckpoint
        var readAt: ContinuousClock.Instant
        var seenAt: ContinuousClock.Instant
    }

    /// What to answer with `checkpoint`, kept as the latest.
    private func served(_ checkpoint: SignedCheckpoint, readAt: ContinuousClock.Instant, seenAt: ContinuousClock.Instant) -> SignedCheckpoint {
        latest = Self.latest(after: latest, Served(checkpoint: checkpoint, readAt: readAt, seenAt: seenAt))
        return latest!.checkpoint
    }

    /// The checkpoint to serve after learning of `next`: the later word on the log stands. Two
    /// signings may overlap (the last one, at shutdown, beside one under way), and a read of
    /// another node's checkpoint may come between, their callers resuming in any order: one
    /// learned of earlier never replaces the one at hand, so the tree served never shrinks while
    /// the log grows. One learned of later saw the log as it is, even taken back (a failover that
    /// lost commits), and stands though smaller: the larger tree can no longer be proven.
    static func latest(after latest: Served?, _ next: Served) -> Served {
        guard let latest else { return next }
        if next.seenAt < latest.seenAt || (next.seenAt == latest.seenAt && next.checkpoint.size < latest.checkpoint.size) { return latest }
        return next
    }

    /// Signs the tree as the log holds it now and keeps the checkpoint, unless the one kept last
    /// already covers it. Synchronous: run it off the cooperative pool.
    /// - Throws: ``StoreError`` `.corrupt` when the last checkpoint kept is another key's or
    ///   origin's, or the tree no longer extends it.
    public static func sign(_ store: any EventStore, _ signer: NoteSigner, as identity: LogIdentity) throws -> SignedCheckpoint {
        let (size, root, last, lastRootNow) = try store.read { snapshot in
            let size = try snapshot.lastPosition()
            let last = try snapshot.latestSignedCheckpoint()
            let lastRootNow = try last.flatMap { $0.size <= size ? try snapshot.rootHash(size: $0.size) : nil }
            return (size, try snapshot.rootHash(size: size), last, lastRootNow)
        }
        if let last {
            guard let lastRootNow, lastRootNow == (try identity.check(last)).rootHash else {
                throw StoreError(.corrupt, "the log's tree no longer extends the checkpoint it signed for \(last.size) events; nothing more is signed until `upload-replay` names what changed")
            }
            if last.size == size { return last }
        }
        let note = try SignedNote.sign(Checkpoint(origin: identity.origin, size: size, rootHash: root).text, with: signer)
        return try store.keep(SignedCheckpoint(size: size, note: note), signedAs: identity)
    }

    /// Checks that the log's checkpoints so far are `identity`'s (``LogIdentity``).
    public static func checkIdentity(_ store: any EventStore, _ identity: LogIdentity) throws {
        if let last = try store.read({ try $0.latestSignedCheckpoint() }) { try identity.check(last) }
    }
}

/// Signs a checkpoint once a minute (or every interval, when that is longer) while the log grows,
/// so that the kept checkpoints follow the log even when nobody asks for one, until the group
/// shuts down. Asked-for checkpoints (``CheckpointSigner/current()``) come at most once per interval.
///
/// Not every interval: keeping a checkpoint is a durable commit of its own beside the writer's,
/// and one a second cost 2–8 % of InitiateLayerUpload throughput at saturation (BENCHMARKS.md);
/// a checkpoint nobody asked for is only needed for verify's cross-check, which once a minute serves.
public struct CheckpointSigning: Service {
    let signer: CheckpointSigner
    let logger: Logger
    let interval: Duration

    public static let unaskedInterval = Duration.seconds(60)

    public init(_ signer: CheckpointSigner, logger: Logger) {
        self.signer = signer
        self.logger = logger
        interval = max(signer.interval, Self.unaskedInterval)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failing = false
            while !Task.isCancelled {
                do {
                    _ = try await signer.current()
                    failing = false
                } catch is CancellationError {
                    return
                } catch {
                    // Logged once per run of failures, not every interval.
                    if !failing { logger.error("cannot sign a checkpoint", metadata: ["error": "\(error)"]) }
                    failing = true
                }
                try? await Task.sleep(for: interval)
            }
        }
        // After the services that append (listed after this one) have stopped.
        do {
            _ = try await signer.signLast()
        } catch {
            logger.error("cannot sign the last checkpoint at shutdown", metadata: ["error": "\(error)"])
        }
    }
}
