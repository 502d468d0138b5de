import Foundation
import LMDBKit
import UploadCore
import CoreMetrics
import Logging

/// The one writer of a store: a dedicated thread that takes every queued command, hands them all
/// to its backend's ``BatchCommitter`` (which decides, appends and projects them in one write
/// transaction and commits it durably), and only then answers each caller: itself, or through a
/// ``BatchAnswerer`` when other callers already wait for it or that thread is still answering.
///
/// Commands of one batch are decided in queue order, each against the state the ones before it
/// left. A refused command writes nothing and does not disturb the rest of its batch. A command
/// the store cannot write (a key LMDB refuses, a record that does not decode) fails alone: the
/// transaction is given up and the batch written again without it. If the commit itself fails,
/// nothing of the batch is kept and every caller in it gets the error.
///
/// A thread rather than a task: a commit blocks for an fsync, and the cooperative pool has only
/// as many threads as cores.
final class GroupCommitWriter: Sendable {
    /// Each command's result, in the order the commands were submitted.
    typealias Results = [Result<CommandOutcome, any Error>]

    /// One command waiting for the writer, with where its answer goes. A class: a batch is handed
    /// and walked several times on the writer's thread, and copying a reference costs one retain
    /// where copying the command and its metadata cost one per string.
    final class Pending: Sendable {
        let command: Command
        let metadata: RequestMetadata
        let uploadId: String?
        let refusalUnlessRetry: (any Error & Sendable)?
        let answersMismatch: Bool
        let claimedBlobsAt: ContinuousClock.Instant?
        let answer: Answers
        let index: Int

        init(_ submission: CommandSubmission, uploadId: String?, answer: Answers, index: Int) {
            self.command = submission.command
            self.metadata = submission.metadata
            self.refusalUnlessRetry = submission.refusalUnlessRetry
            self.answersMismatch = submission.answersMismatch
            self.claimedBlobsAt = submission.claimedBlobsAt
            self.uploadId = uploadId
            self.answer = answer
            self.index = index
        }

        /// Whether this is its submission's last command: its caller has nothing more queued.
        var endsSubmission: Bool { index == answer.count - 1 }
    }

    /// Collects the results of one submission's commands and resumes its caller with all of them
    /// (one caller, one continuation, however many commands).
    final class Answers: Sendable {
        /// How many commands the submission holds.
        let count: Int
        /// The results so far; `nil` for a submission of one command (most are), whose only result
        /// resumes its caller at once.
        private let state: Locked<(results: [Result<CommandOutcome, any Error>?], left: Int)>?
        private let continuation: CheckedContinuation<Results, Never>

        init(count: Int, _ continuation: CheckedContinuation<Results, Never>) {
            self.count = count
            state = count == 1 ? nil : Locked((Array(repeating: nil, count: count), count))
            self.continuation = continuation
        }

        /// Records the result of the command at `index`; each index is set exactly once.
        func set(_ index: Int, _ result: Result<CommandOutcome, any Error>) {
            guard let state else { return continuation.resume(returning: [result]) }
            let done: Results? = state.withLock { state in
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
        /// Time spent writing batches, commits included: against the time passed, how busy the
        /// writer is, and so whether it or its callers bound the rate.
        var writing = Duration.zero
    }

    private struct Queue {
        var pending: [Pending] = []
        /// The callers with commands in `pending`: one per submission, however many commands it
        /// holds, until its last command is taken into a batch.
        var callers = 0
        /// How many waiting callers wake the writer: 1 while it waits for work, the count it is
        /// gathering for while it gathers a batch, and `Int.max` while it writes (a signal then
        /// would wake nobody). So a batch costs one wake-up, not one per command.
        var wakeAt = Int.max

        /// Whether as many commands wait as one batch takes: then gathering more gains nothing.
        func hasFullBatch(_ maxBatchSize: Int) -> Bool { pending.count >= maxBatchSize }
        /// Whether a transaction is asked for even with no command: every one folds the
        /// projections up to the log's tail first (``requestFold()``).
        var foldRequested = false
        var stopping = false
        var stopped = false
        /// Callers of ``shutdown()`` waiting for the thread to end.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let committer: any BatchCommitter
    private let configuration: StoreConfiguration
    private let notifier: CommitNotifier
    private let commitLatency: CoreMetrics.Timer
    private let batchSize: Recorder
    /// Batches whose write failed as a whole (their callers got the store's error).
    private let failedBatches: Counter
    // `condition` guards `queue`: one lock for both waiting and signalling.
    private let condition = NSCondition()
    nonisolated(unsafe) private var queue = Queue()
    private let statistics = Locked(Statistics())

    /// The niceness of the writer thread and of the thread that answers its batches, where the
    /// process may raise a thread's priority: every request waits on their commits and answers,
    /// and on a busy host the writer, runnable, waited for a CPU a quarter to two fifths of the
    /// time (a profile at 32 connections on two cores). Threads they start do not inherit it.
    static let niceness: Int32 = -10

    init(committer: any BatchCommitter, configuration: StoreConfiguration, notifier: CommitNotifier) {
        precondition(configuration.maxBatchSize >= 1, "a batch holds at least one command")
        self.committer = committer
        self.configuration = configuration
        self.notifier = notifier
        commitLatency = CoreMetrics.Timer(label: "upload_store_commit_seconds", factory: configuration.metricsFactory)
        batchSize = Recorder(label: "upload_store_batch_commands", factory: configuration.metricsFactory)
        failedBatches = Counter(label: "upload_store_failed_batches_total", factory: configuration.metricsFactory)
        NamedThread.start("uc-writer", niceness: Self.niceness) { [weak self] in
            let waiters = self?.runUntilStopped() ?? []
            // Resumed only after run's reference to the writer is gone, so that closing the
            // store releases the environment at once, not whenever this thread unwinds.
            for waiter in waiters { waiter.resume() }
        }
    }

    var currentStatistics: Statistics { statistics.withLock { $0 } }

    /// Queues the submissions, in order and all at once, and returns each one's result once the
    /// transaction holding it is durable.
    func submit(_ submissions: [CommandSubmission]) async -> Results {
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
                queue.pending.append(Pending(submission, uploadId: uploadIds[index], answer: answers, index: index))
            }
            queue.callers += 1
            if queue.callers >= queue.wakeAt || (queue.hasFullBatch(configuration.maxBatchSize) && queue.wakeAt != Int.max) { condition.signal() }
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

    /// Asks for a transaction soon even if no command comes: it records nothing, but folds into
    /// the projections what they miss of the log first, as every transaction does (after their
    /// commit failed behind the log's, in this process or another).
    func requestFold() {
        condition.withLock {
            queue.foldRequested = true
            condition.signal()
        }
    }

    /// The thread's body. - Returns: the shutdown callers to resume once the writer is released.
    private func runUntilStopped() -> [CheckedContinuation<Void, Never>] {
        committer.start()
        // Made here, so that it lives exactly as long as this loop, which always finishes it.
        let answerer = BatchAnswerer()
        var expected = 0
        var lastBatch = Duration.zero
        while let batch = nextBatch(expecting: expected, for: min(lastBatch, configuration.maxGatherWait)) {
            let started = ContinuousClock.now
            let (results, tail) = write(batch)
            let elapsed = ContinuousClock.now - started
            // Counted before anyone is answered, so an answered caller that is quick to send
            // its next command is not counted twice.
            let waiting = condition.withLock { queue.callers }
            // With callers waiting, the writer starts on them at once rather than gather for the
            // ones this batch answers (see ConcurrencyRules, "Answering while callers wait"). A
            // fold alone answers nobody: the callers of the batch before it are still expected.
            if !batch.isEmpty {
                expected = min(waiting + (waiting > 0 ? 0 : batch.count { $0.endsSubmission }), configuration.maxBatchSize)
                lastBatch = elapsed
            }
            // Commits only: a failing disk or database must not show as fast, normal commits; and
            // commands only, not a fold alone.
            if tail != nil, !batch.isEmpty {
                commitLatency.recordNanoseconds(elapsed.nanoseconds)
                batchSize.record(batch.count)
            } else if tail == nil {
                failedBatches.increment()
            }
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
                $0.writing += elapsed
            }
            // Handed over when callers already wait for the next batch, or batches handed over
            // are still being answered (which this one must not overtake).
            if waiting > 0 || answerer.isBusy {
                answerer.answer(batch, results)
            } else {
                BatchAnswerer.resume(batch, results)
            }
        }
        answerer.finish()
        committer.stop()
        condition.lock()
        defer { condition.unlock() }
        // Only now, with every caller answered, does a later shutdown() return at once.
        queue.stopped = true
        let waiters = queue.stopWaiters
        queue.stopWaiters = []
        return waiters
    }

    /// Waits for work; `nil` once stopping and drained.
    ///
    /// After a batch that nobody queued behind, its callers send their next commands a moment
    /// later; taking the first alone would split the callers into groups that alternate, each
    /// paying a full fsync for part of the work, so the writer waits until `expected` callers (as
    /// many as it answered) have queued, or `gather` passes (the last batch's time, at most
    /// ``StoreConfiguration/maxGatherWait``). After a batch that callers queued behind, `expected`
    /// is only those: the writer is then the bottleneck, and starts on them at once.
    /// Callers, not commands: a lone caller is never delayed, even one whose last submission held
    /// several commands (a registry client's part and completion) and whose next holds one.
    private func nextBatch(expecting expected: Int, for gather: Duration) -> [Pending]? {
        condition.lock()
        defer {
            queue.wakeAt = Int.max
            condition.unlock()
        }
        queue.wakeAt = 1
        while queue.pending.isEmpty && !queue.stopping && !queue.foldRequested { condition.wait() }
        if queue.callers < expected && !queue.hasFullBatch(configuration.maxBatchSize) && !queue.stopping && gather > .zero {
            queue.wakeAt = expected
            // Timed by the monotonic clock, in short slices: a wall-clock step during the wait
            // can stretch only the current slice.
            let deadline = ContinuousClock.now + gather
            while queue.callers < expected && !queue.hasFullBatch(configuration.maxBatchSize) && !queue.stopping {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { break }
                let slice = min(remaining, .microseconds(500))
                _ = condition.wait(until: Date(timeIntervalSinceNow: slice.seconds))
            }
        }
        // Any transaction folds first: a batch of commands answers the request, and one alone does
        // if none came (never while stopping: the committer's stop folds and syncs last).
        defer { queue.foldRequested = false }
        if queue.pending.isEmpty { return queue.foldRequested && !queue.stopping ? [] : nil }
        let count = Self.batchLength(
            waiting: queue.pending.count, maxBatchSize: configuration.maxBatchSize, maxManifestBytes: configuration.maxBatchManifestBytes,
            manifestBytes: { queue.pending[$0].command.manifestBytes }, endsSubmission: { queue.pending[$0].endsSubmission })
        let batch = Array(queue.pending.prefix(count))
        queue.pending.removeFirst(count)
        queue.callers -= batch.count { $0.endsSubmission }
        return batch
    }

    /// How many of the `waiting` commands the next batch takes: as many as a batch holds (in
    /// commands, and in manifest bytes past its first command), less the start of a submission
    /// that would not fit whole. A submission is never split across batches when it fits in one,
    /// so its commands commit together (a registry client's part and completion); only a first
    /// submission larger than a batch is split.
    /// - Parameter manifestBytes: the manifest bytes of the waiting command at an index.
    /// - Parameter endsSubmission: whether the waiting command at an index is its submission's last.
    static func batchLength(
        waiting: Int, maxBatchSize: Int, maxManifestBytes: Int = .max, manifestBytes: (Int) -> Int = { _ in 0 },
        endsSubmission: (Int) -> Bool
    ) -> Int {
        var count = 0, bytes = 0
        while count < min(waiting, maxBatchSize) {
            let next = manifestBytes(count)
            if count > 0 && next > maxManifestBytes - bytes { break }
            bytes += next
            count += 1
        }
        guard count < waiting, let end = (0..<count).last(where: endsSubmission) else { return count }
        return end + 1
    }

    /// How many commands of one batch may fail alone. Past that the failures are the store's
    /// (a failing disk, say), not the commands', and the rest of the batch fails with them: each
    /// isolation costs a rewrite of the batch.
    static let maximumIsolatedFailures = 16

    /// - Returns: each command's result, and the log's tail after the commit (`nil` if it failed).
    private func write(_ batch: [Pending]) -> (Results, UInt64?) {
        var isolated: [Int: any Error] = [:]
        while true {
            do {
                let (results, tail) = try committer.commit(batch, isolating: isolated)
                return (results, tail)
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
        // The committer's own account (PostgreSQL's says whether the write may have been kept).
        if let error = error as? StoreError, error.code == .io { return error }
        return StoreError(
            error is ProjectionError || error is CodecError || (error as? StoreError)?.code == .corrupt ? .corrupt : .io,
            "the write failed and nothing of it was kept: \(error)")
    }
}
