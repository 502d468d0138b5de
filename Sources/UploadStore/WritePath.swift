import UploadCore

/// What a backend does with one batch of the ``GroupCommitWriter``, on the writer's thread: in one
/// write transaction, from the state at the log's tail, decide each command (``WritePath``), append
/// its events and project them, and commit durably.
protocol BatchCommitter: AnyObject, Sendable {
    /// Called once on the writer's thread before the first batch (to warm what it keeps in memory).
    func start()
    /// Called once on the writer's thread after the last batch, before the store's `close()`
    /// returns: closing work that blocks (syncing), kept off the callers' threads.
    func stop()
    /// Writes `batch` but the `isolated` commands, which are answered with their failures.
    /// - Returns: each command's result, and the log's tail after the commit.
    /// - Throws: ``CommandFailure`` when one command cannot be written (the writer isolates it and
    ///   calls again), or any error that fails the whole batch; either way nothing was kept.
    func commit(
        _ batch: [GroupCommitWriter.Pending], isolating isolated: [Int: any Error]
    ) throws -> (results: GroupCommitWriter.Results, tail: UInt64)
}

extension BatchCommitter {
    func stop() {}
}

/// A failure while writing the command at `index`: the transaction is given up and written
/// again without it, so that one command the store cannot write fails alone.
struct CommandFailure: Error {
    let index: Int
    let error: any Error
}

/// One backend's open write transaction, as the write path sees it.
protocol WriteTransaction {
    associatedtype Tables: KeyedProjectionTables
    /// The projection tables, current at the log's tail inside this transaction.
    var tables: Tables { get set }
    /// Appends `envelope` to the log and binds it into the Merkle tree.
    mutating func append(_ envelope: EventEnvelope) throws
    /// The `count` events from position `first` on (the run a retry recorded).
    func events(from first: UInt64, count: UInt64) throws -> [EventEnvelope]
}

/// The one write path, whichever backend holds the transaction: a batch's commands decided and
/// recorded in order, from the state at the log's tail.
struct WritePath {
    let settings: DecisionSettings
    /// This batch's calls, kept apart until the commit holds them.
    var marks: InvocationWindow
    /// The position of the last event written so far.
    var position: UInt64
    /// The time every event of the transaction is recorded at.
    let now: Timestamp
    /// ``StoreConfiguration/blobClaimLease``.
    let blobClaimLease: Duration

    init(settings: DecisionSettings, retryWindow: RetryWindow, blobClaimLease: Duration, tail: UInt64, now: Timestamp) {
        self.settings = settings
        self.blobClaimLease = blobClaimLease
        marks = InvocationWindow(limit: retryWindow)
        position = tail
        self.now = now
    }

    /// Decides and records every command of `batch` but the `isolated` ones.
    /// - Parameter invocations: the retry window, valid at the log's tail in this transaction.
    ///   Passed, never kept: a copy alive when the committer next changes its window would make
    ///   that change copy the whole window.
    /// - Throws: ``CommandFailure`` naming the command the store could not write.
    mutating func write(
        _ batch: [GroupCommitWriter.Pending], isolating isolated: [Int: any Error], in txn: inout some WriteTransaction,
        invocations: InvocationWindow
    ) throws -> GroupCommitWriter.Results {
        var results: GroupCommitWriter.Results = []
        results.reserveCapacity(batch.count)
        for (index, pending) in batch.enumerated() {
            if let failure = isolated[index] {
                results.append(.failure(failure))
                continue
            }
            do {
                results.append(try write(pending, in: &txn, invocations: invocations))
            } catch {
                throw CommandFailure(index: index, error: error)
            }
        }
        return results
    }

    /// Decides one command and appends its events after ``position``.
    /// - Returns: its outcome, or its refusal (which writes nothing).
    /// - Throws: when the store cannot write it.
    private mutating func write(
        _ pending: GroupCommitWriter.Pending, in txn: inout some WriteTransaction, invocations: InvocationWindow
    ) throws -> Result<CommandOutcome, any Error> {
        let decision: Decision
        do {
            // A retry of an SDK call recorded within the window is answered with what it recorded.
            if let id = pending.metadata.invocationId {
                let run = marks.run(for: id, tail: position, now: now) ?? invocations.run(for: id, tail: position, now: now)
                do {
                    if let recorded = try CommandOutcome.recorded(
                        pending.command, pending.metadata, run: run, events: txn.events, state: txn.tables, settings: settings) {
                        return .success(recorded)
                    }
                } catch let mismatch as CommandError
                    where pending.refusalUnlessRetry != nil && !pending.answersMismatch && mismatch.code == .idempotentParameterMismatch {
                    // Not its retry: refused as its caller may not make it (below), telling nothing of the other call.
                }
            }
            if let refusal = pending.refusalUnlessRetry { return .failure(refusal) }
            // Here, inside the transaction that commits it, as late as it can be judged before the commit.
            if let claimed = pending.claimedBlobsAt, ContinuousClock.now - claimed > blobClaimLease {
                return .failure(StoreError(.overloaded, "The server took too long to record this call; retry it"))
            }
            decision = try Decider.decide(
                pending.command, state: txn.tables, settings: settings,
                context: DecisionContext(now: now, newUploadId: pending.uploadId, sentInvocationId: pending.metadata.invocationId != nil))
        } catch let refusal as CommandError {
            return .failure(refusal)
        }
        var envelopes: [EventEnvelope] = []
        for event in decision.events {
            position += 1
            let envelope = EventEnvelope(position: position, recordedAt: now, metadata: pending.metadata, event: event)
            try txn.append(envelope)
            let projected = ProjectedEvent(envelope)
            try Projector.apply(projected, to: &txn.tables)
            if let mark = projected.invocation { marks.note(mark, at: position) }
            envelopes.append(envelope)
        }
        return .success(CommandOutcome(events: envelopes, decision: decision))
    }
}
