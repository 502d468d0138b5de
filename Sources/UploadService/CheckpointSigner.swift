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
    public nonisolated let origin: String
    public nonisolated let verifier: NoteVerifier
    /// The longest a served checkpoint may lag the log: also the shortest time between two signings.
    public nonisolated let interval: Duration
    private let store: any EventStore
    private let signer: NoteSigner
    private var latest: (checkpoint: SignedCheckpoint, readAt: ContinuousClock.Instant)?
    private var signing: Task<(SignedCheckpoint, ContinuousClock.Instant), any Error>?

    /// The bounds of `interval`: at most one signature a second, and at least one a day.
    public static let intervals: ClosedRange<Int64> = 1...86_400

    public init(store: any EventStore, signer: NoteSigner, origin: String, interval: Duration = .seconds(1)) {
        self.store = store
        self.signer = signer
        self.origin = origin
        self.verifier = signer.verifier
        self.interval = interval
    }

    /// The newest checkpoint, signed now when the one at hand was read from the log more than
    /// `interval` ago. Callers arriving while one is signed wait for it.
    public func current() async throws -> SignedCheckpoint {
        if let latest, ContinuousClock.now - latest.readAt < interval { return latest.checkpoint }
        if let signing { return try await signing.value.0 }
        let (store, signer, origin) = (self.store, self.signer, self.origin)
        let task = Task {
            try await NIOThreadPool.singleton.runIfActive {
                // The log is read at this instant: the checkpoint is at most this old.
                let readAt = ContinuousClock.now
                return (try Self.sign(store, signer, origin: origin), readAt)
            }
        }
        signing = task
        defer { signing = nil }
        let (checkpoint, readAt) = try await task.value
        latest = (checkpoint, readAt)
        return checkpoint
    }

    /// Signs the tree as the log holds it now and keeps the checkpoint, unless the one kept last
    /// already covers it. Synchronous: run it off the cooperative pool.
    /// - Throws: ``StoreError`` `.corrupt` when the tree no longer extends the last checkpoint kept.
    public static func sign(_ store: any EventStore, _ signer: NoteSigner, origin: String) throws -> SignedCheckpoint {
        let (size, root, last, lastRootNow) = try store.read { snapshot in
            let size = try snapshot.lastPosition()
            let last = try snapshot.latestSignedCheckpoint()
            let lastRootNow = try last.flatMap { $0.size <= size ? try snapshot.rootHash(size: $0.size) : nil }
            return (size, try snapshot.rootHash(size: size), last, lastRootNow)
        }
        if let last {
            try checkSignedByKey(last, signer)
            guard let lastRootNow, lastRootNow == (try last.checkpoint()).rootHash else {
                throw StoreError(.corrupt, "the log's tree no longer extends the checkpoint it signed for \(last.size) events; nothing more is signed until `upload-replay` names what changed")
            }
            if last.size == size { return last }
        }
        let note = try SignedNote.sign(Checkpoint(origin: origin, size: size, rootHash: root).text, with: signer)
        return try store.keep(SignedCheckpoint(size: size, note: note))
    }
}

extension CheckpointSigner {
    /// Checks that the log's checkpoints so far were signed by `signer`'s key: a log that signs
    /// with a second key has two identities, and its auditors would trust neither.
    public static func checkKey(_ store: any EventStore, _ signer: NoteSigner) throws {
        if let last = try store.read({ try $0.latestSignedCheckpoint() }) { try checkSignedByKey(last, signer) }
    }

    static func checkSignedByKey(_ checkpoint: SignedCheckpoint, _ signer: NoteSigner) throws {
        do {
            _ = try SignedNote.open(checkpoint.note, verifiedBy: signer.verifier)
        } catch {
            throw NoteError("the log's checkpoints are signed by another key than \(signer.verifier.text); give the log's own key with --log-key")
        }
    }
}

/// Signs a checkpoint every interval while the log grows (``CheckpointSigner``), so that the kept
/// checkpoints follow the log even when nobody asks for one, until the group shuts down.
public struct CheckpointSigning: Service {
    let signer: CheckpointSigner
    let logger: Logger

    public init(_ signer: CheckpointSigner, logger: Logger) {
        self.signer = signer
        self.logger = logger
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
                try? await Task.sleep(for: signer.interval)
            }
        }
    }
}
