import Foundation
import LMDBKit
import UploadCore
import CoreMetrics
import Logging

/// The one writer of a store: a dedicated thread that takes every queued command, decides, appends
/// and projects them all in one write transaction of each environment, commits the log's (durably,
/// by default) and then the projections' (unsynced), and only then answers each caller.
///
/// Commands of one batch are decided in queue order, each against the state the ones before it
/// left. A refused command writes nothing and does not disturb the rest of its batch. A command
/// the store cannot write (a key LMDB refuses, a record that does not decode) fails alone: the
/// transaction is given up and the batch written again without it. If the commit itself fails,
/// nothing of the batch is kept and every caller in it gets the error. If the projections' commit
/// fails after the log's, the batch stands (it is durable): the writer folds it into the
/// projections from the log at once, or, if that fails too, the next transaction does first.
///
/// A thread rather than a task: a commit blocks for an fsync, and the cooperative pool has only
/// as many threads as cores.
final class GroupCommitWriter: Sendable {
    struct Pending {
        let command: Command
        let metadata: RequestMetadata
        let uploadId: String?
        let answer: Answers
        let index: Int
    }

    /// Collects the results of one submission's commands and resumes its caller with all of them
    /// (one caller, one continuation, however many commands).
    final class Answers: Sendable {
        private let state: Locked<(results: [Result<CommandOutcome, any Error>?], left: Int)>
        private let continuation: CheckedContinuation<[Result<CommandOutcome, any Error>], Never>

        init(count: Int, _ continuation: CheckedContinuation<[Result<CommandOutcome, any Error>], Never>) {
            state = Locked((Array(repeating: nil, count: count), count))
            self.continuation = continuation
        }

        func set(_ index: Int, _ result: Result<CommandOutcome, any Error>) {
            let done: [Result<CommandOutcome, any Error>]? = state.withLock { state in
                state.results[index] = result
                state.left -= 1
                return state.left == 0 ? state.results.map { $0! } : nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    struct Statistics: Sendable, Equatable {
        var transactions = 0
        var commands = 0
        var largestBatch = 0
    }

    private struct Queue {
        var pending: [Pending] = []
        /// How many queued commands wake the writer: 1 while it waits for work, the count it is
        /// gathering for while it gathers a batch, and `Int.max` while it writes (a signal then
        /// would wake nobody). So a batch costs one wake-up, not one per command.
        var wakeAt = Int.max
        var stopping = false
        var stopped = false
        /// Callers of ``shutdown()`` waiting for the thread to end.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let environment: Environment
    private let schema: Schema
    private let projections: ProjectionEnvironment
    private let configuration: StoreConfiguration
    private let notifier: CommitNotifier
    private let commitLatency: CoreMetrics.Timer
    private let batchSize: Recorder
    // `condition` guards `queue`: one lock for both waiting and signalling.
    private let condition = NSCondition()
    nonisolated(unsafe) private var queue = Queue()
    private let statistics = Locked(Statistics())
    /// What answers retries; read and changed only on the writer's thread.
    nonisolated(unsafe) private var invocations: InvocationWindow

    init(
        environment: Environment, schema: Schema, projections: ProjectionEnvironment, configuration: StoreConfiguration,
        notifier: CommitNotifier
    ) {
        self.environment = environment
        self.schema = schema
        self.projections = projections
        self.configuration = configuration
        self.notifier = notifier
        invocations = InvocationWindow(limit: configuration.retryWindow)
        commitLatency = CoreMetrics.Timer(label: "upload_store_commit_seconds", factory: configuration.metricsFactory)
        batchSize = Recorder(label: "upload_store_batch_commands", factory: configuration.metricsFactory)
        let thread = Thread { [weak self] in
            let waiters = self?.runUntilStopped() ?? []
            // Resumed only after run's reference to the writer is gone, so that closing the
            // store releases the environment at once, not whenever this thread unwinds.
            for waiter in waiters { waiter.resume() }
        }
        thread.name = "upload-store-writer"
        thread.start()
    }

    var currentStatistics: Statistics { statistics.withLock { $0 } }

    /// Queues the submissions, in order and all at once, and returns each one's result once the
    /// transaction holding it is durable.
    func submit(_ submissions: [CommandSubmission]) async -> [Result<CommandOutcome, any Error>] {
        guard !submissions.isEmpty else { return [] }
        let uploadIds = submissions.map { $0.command.startsUpload ? configuration.uploadIds.next() : nil }
        return await withCheckedContinuation { continuation in
            let answers = Answers(count: submissions.count, continuation)
            condition.lock()
            let refusal: StoreError? =
                if queue.stopping { StoreError(.closed, "the store is closed") }
                // A submission is refused only when the queue is full, so one larger than the
                // bound is still taken when it has room to start.
                else if queue.pending.count >= configuration.maxQueuedCommands {
                    StoreError(.overloaded, "\(configuration.maxQueuedCommands) commands are already waiting to be written; retry shortly")
                } else { nil }
            if let refusal {
                condition.unlock()
                for index in submissions.indices { answers.set(index, .failure(refusal)) }
                return
            }
            for (index, submission) in submissions.enumerated() {
                queue.pending.append(Pending(
                    command: submission.command, metadata: submission.metadata, uploadId: uploadIds[index], answer: answers, index: index))
            }
            if queue.pending.count >= queue.wakeAt { condition.signal() }
            condition.unlock()
        }
    }

    /// Stops taking commands, writes every command already queued, and returns when the thread has ended.
    func shutdown() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            condition.lock()
            defer { condition.unlock() }
            if queue.stopped {
                done.resume()
                return
            }
            queue.stopping = true
            queue.stopWaiters.append(done)
            condition.signal()
        }
    }

    /// The thread's body. - Returns: the shutdown callers to resume once the writer is released.
    private func runUntilStopped() -> [CheckedContinuation<Void, Never>] {
        fillRetryWindow()
        var expected = 0
        var lastBatch = Duration.zero
        while let batch = nextBatch(expecting: expected, for: min(lastBatch, configuration.maxGatherWait)) {
            let started = ContinuousClock.now
            let (results, tail) = write(batch)
            let elapsed = ContinuousClock.now - started
            // Counted before anyone is answered, so an answered caller that is quick to send
            // its next command is not counted twice.
            expected = min(condition.withLock { queue.pending.count } + batch.count, configuration.maxBatchSize)
            lastBatch = elapsed
            commitLatency.recordNanoseconds(elapsed.nanoseconds)
            batchSize.record(batch.count)
            if let tail {
                notifier.committed(upTo: tail)
                configuration.logger.debug("batch committed", metadata: [
                    "batch.commands": "\(batch.count)", "event.last": "\(tail)",
                    "commit.microseconds": "\(elapsed.nanoseconds / 1000)"])
            }
            statistics.withLock {
                $0.transactions += 1
                $0.commands += batch.count
                $0.largestBatch = max($0.largestBatch, batch.count)
            }
            for (pending, result) in zip(batch, results) {
                pending.answer.set(pending.index, result)
            }
        }
        condition.lock()
        defer { condition.unlock() }
        let waiters = queue.stopWaiters
        queue.stopWaiters = []
        return waiters
    }

    /// Fills the retry window from a read snapshot when the writer starts, so that the first write
    /// transaction (holding LMDB's write lock, which other processes wait for) only tops it up.
    /// Commands queue meanwhile. A failure here is left to the first transaction to meet again.
    private func fillRetryWindow() {
        do {
            try projections.environment.read { ptxn in
                try invocations.catchUp(ptxn, projections.schema, tail: try ProjectionCheckpoint.read(ptxn, projections.schema).position)
            }
        } catch {
            configuration.logger.error("the retry window could not be filled at start", metadata: ["error": "\(error)"])
        }
    }

    /// Waits for work; `nil` once stopping and drained.
    ///
    /// The callers the last batch answered send their next commands a moment later, while the
    /// ones that queued during that batch are already waiting. Taking only those would split the
    /// callers into two groups that alternate, each paying a full fsync for half the work, so the
    /// writer waits until `expected` commands (those waiting plus those answered) are queued, or
    /// `gather` passes (the last batch's time, at most ``StoreConfiguration/maxGatherWait``). A
    /// lone caller is never delayed: its one command is all the writer waits for.
    private func nextBatch(expecting expected: Int, for gather: Duration) -> [Pending]? {
        condition.lock()
        defer {
            queue.wakeAt = Int.max
            condition.unlock()
        }
        queue.wakeAt = 1
        while queue.pending.isEmpty && !queue.stopping { condition.wait() }
        if queue.pending.count < expected && !queue.stopping && gather > .zero {
            queue.wakeAt = expected
            // Timed by the monotonic clock, in short slices: a wall-clock step during the wait
            // can stretch only the current slice.
            let deadline = ContinuousClock.now + gather
            while queue.pending.count < expected && !queue.stopping {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { break }
                let slice = min(remaining, .microseconds(500))
                _ = condition.wait(until: Date(timeIntervalSinceNow: slice.seconds))
            }
        }
        if queue.pending.isEmpty {
            queue.stopped = true
            return nil
        }
        let count = min(queue.pending.count, configuration.maxBatchSize)
        let batch = Array(queue.pending.prefix(count))
        queue.pending.removeFirst(count)
        return batch
    }

    /// A failure while writing the command at `index`: the transaction is given up and written
    /// again without it, so that one command the store cannot write fails alone.
    private struct CommandFailure: Error {
        let index: Int
        let error: any Error
    }

    /// How many commands of one batch may fail alone. Past that the failures are the store's
    /// (a failing disk, say), not the commands', and the rest of the batch fails with them: each
    /// isolation costs a rewrite of the batch.
    static let maximumIsolatedFailures = 16

    /// - Returns: each command's result, and the log's tail after the commit (`nil` if it failed).
    private func write(_ batch: [Pending]) -> ([Result<CommandOutcome, any Error>], UInt64?) {
        var isolated: [Int: any Error] = [:]
        while true {
            do {
                return try writeGrowingTheMap(batch, isolated: isolated)
            } catch let failure as CommandFailure where isolated.count < Self.maximumIsolatedFailures {
                configuration.logger.error("a command could not be written; the rest of its batch is written without it", metadata: [
                    "command": "\(batch[failure.index].command.operationName)", "request.id": "\(batch[failure.index].metadata.requestId)",
                    "error": "\(failure.error)"])
                isolated[failure.index] = Self.storeError(failure.error)
            } catch {
                let failure = Self.storeError((error as? CommandFailure)?.error ?? error)
                return (batch.map { _ in .failure(failure) }, nil)
            }
        }
    }

    private static func storeError(_ error: any Error) -> StoreError {
        StoreError(
            error is ProjectionError || error is CodecError || (error as? StoreError)?.code == .corrupt ? .corrupt : .io,
            "the write failed and nothing of it was kept: \(error)")
    }

    /// Writes the batch; when the map is full, grows it and writes the whole batch again (the
    /// failed transaction kept nothing), so callers never notice.
    private func writeGrowingTheMap(
        _ batch: [Pending], isolated: [Int: any Error]
    ) throws -> ([Result<CommandOutcome, any Error>], UInt64?) {
        while true {
            do {
                return try writeOnce(batch, isolated: isolated)
            } catch let failure as CommandFailure {
                guard let full = failure.error as? LMDBError, full.code == .mapFull else { throw failure }
                try growMap()
            } catch let error as LMDBError where error.code == .mapFull {
                try growMap()
            }
        }
    }

    /// Grows both maps: the error does not say whose was full, and a map costs only address space.
    private func growMap() throws {
        try environment.growMap()
        try projections.environment.growMap()
        configuration.logger.notice("grew the LMDB maps", metadata: [
            "map.bytes": "\(environment.usage().mapSize)", "projections.map.bytes": "\(projections.environment.usage().mapSize)"])
    }

    /// One transaction of each environment for the batch, less the `isolated` commands, which get
    /// their failures. The projections' transaction begins first and commits last, in every process,
    /// so two writers never wait for each other's locks in opposite orders; while it is open, the
    /// projections are caught up to the log's tail and decided from.
    private func writeOnce(
        _ batch: [Pending], isolated: [Int: any Error]
    ) throws -> ([Result<CommandOutcome, any Error>], UInt64?) {
        var logCommitted: (results: [Result<CommandOutcome, any Error>], tail: UInt64, now: Timestamp, marks: InvocationWindow)?
        do {
            try projections.environment.write { ptxn in
                logCommitted = try environment.write { txn in try decideAndAppend(batch, isolated: isolated, txn, ptxn) }
                try injectedProjectionFailure()
            }
        } catch {
            guard logCommitted != nil else { throw error }
            configuration.logger.error("the projections' commit failed after the log's; folding the batch in from the log", metadata: [
                "error": "\(error)"])
            catchUpProjections()
        }
        let (results, tail, now, marks) = logCommitted!
        invocations.absorb(marks)
        invocations.committed(upTo: tail, now: now)
        return (results, tail)
    }

    /// Brings the projections to the log's tail in a transaction of their own, after their commit
    /// failed behind the log's, so that a read after the answer still sees the write. If this fails
    /// too, the batch is still answered (the log holds it), reads lag until the next transaction
    /// folds it in first, and `statistics()` shows the lag.
    private func catchUpProjections() {
        do {
            try injectedProjectionFailure()
            try ProjectionCatchUp.run(environment, schema, projections)
        } catch {
            configuration.logger.error("the projections could not be caught up; the next transaction tries again", metadata: [
                "error": "\(error)"])
        }
    }

    private func injectedProjectionFailure() throws {
        if configuration.failProjectionCommit?() == true { throw StoreError(.io, "the projections' commit failed (injected by a test)") }
    }

    /// The batch's work inside both transactions: the projections caught up to the log's tail,
    /// each command decided from them and its events appended and projected, the checkpoint moved.
    private func decideAndAppend(
        _ batch: [Pending], isolated: [Int: any Error], _ txn: Transaction, _ ptxn: Transaction
    ) throws -> (results: [Result<CommandOutcome, any Error>], tail: UInt64, now: Timestamp, marks: InvocationWindow) {
        var tables = LMDBTables(txn: ptxn, schema: projections.schema, caching: true)
        let tail = try EventLog.tail(txn, schema)
        var position = tail?.position ?? 0
        // Another process may have appended since this writer's last commit, or died between its
        // log's commit and its projections'.
        var checkpoint = try ProjectionCheckpoint.read(ptxn, projections.schema)
        guard checkpoint.version == Projector.version, checkpoint.position <= position else {
            throw StoreError(.corrupt, "the projections (layout \(checkpoint.version.map(String.init) ?? "none"), at position \(checkpoint.position)) do not follow this log (at \(position)); reopen the store to rebuild them")
        }
        if checkpoint.position < position {
            checkpoint.position = try ProjectionCatchUp.apply(txn, schema, after: checkpoint.position, to: &tables)
        }
        // Recorded times never go backwards, even if the wall clock does (nor behind a time
        // this writer has already decided at, which the retry window evicted by).
        let now = max(configuration.clock.now(), tail?.recordedAt ?? invocations.timeFloor)
        try invocations.catchUp(ptxn, projections.schema, tail: position)
        // This batch's calls, kept apart until the commit holds them.
        var marks = InvocationWindow(limit: configuration.retryWindow)
        var results: [Result<CommandOutcome, any Error>] = []
        results.reserveCapacity(batch.count)
        for (index, pending) in batch.enumerated() {
            if let failure = isolated[index] {
                results.append(.failure(failure))
                continue
            }
            do {
                results.append(try write(pending, at: &position, now: now, txn, &tables, marks: &marks))
            } catch {
                throw CommandFailure(index: index, error: error)
            }
        }
        checkpoint.position = position
        try checkpoint.write(ptxn, projections.schema)
        return (results, position, now, marks)
    }

    /// Decides one command and appends its events after `position`.
    /// - Returns: its outcome, or its refusal (which writes nothing).
    /// - Throws: when the store cannot write it.
    private func write(
        _ pending: Pending, at position: inout UInt64, now: Timestamp, _ txn: Transaction, _ tables: inout LMDBTables,
        marks: inout InvocationWindow
    ) throws -> Result<CommandOutcome, any Error> {
        let decision: Decision
        do {
            // A retry of an SDK call recorded within the window is answered with what it recorded.
            if let id = pending.metadata.invocationId {
                let run = marks.run(for: id, tail: position, now: now) ?? invocations.run(for: id, tail: position, now: now)
                if let recorded = try CommandOutcome.recorded(pending.command, pending.metadata, run: run, txn, schema) {
                    return .success(recorded)
                }
            }
            decision = try Decider.decide(
                pending.command, state: tables, settings: configuration.settings,
                context: DecisionContext(now: now, newUploadId: pending.uploadId))
        } catch let refusal as CommandError {
            return .failure(refusal)
        }
        var envelopes: [EventEnvelope] = []
        for event in decision.events {
            position += 1
            let envelope = EventEnvelope(position: position, recordedAt: now, metadata: pending.metadata, event: event)
            try EventLog.append(txn, schema, envelope)
            let projected = ProjectedEvent(envelope)
            try Projector.apply(projected, to: &tables)
            if let mark = projected.invocation { marks.note(mark, at: position) }
            envelopes.append(envelope)
        }
        return .success(CommandOutcome(events: envelopes, decision: decision))
    }
}
