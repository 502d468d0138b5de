import Foundation
import UploadCore

/// Resumes the callers of committed batches on a thread of its own, in commit order, so that the
/// writer can begin the next batch while the last one's callers are answered. Resuming a caller
/// costs a few microseconds; with hundreds of callers in a batch, milliseconds of the writer's
/// time while other callers waited (Tools/Benchmarks/BENCHMARKS.md, twelfth session).
///
/// The writer hands a batch over when callers already wait for it, or when batches handed over
/// earlier are still being answered (which a batch answered by the writer would overtake);
/// otherwise it answers the batch itself, which costs a lone caller no hand-off. Either way a
/// caller is answered only after its batch is durable: a batch reaches this thread after its
/// commit. Only the writer's thread calls ``answer(_:_:)`` and ``finish()``, and the writer
/// makes one for each run of its loop, which always ends by finishing it.
final class BatchAnswerer: Sendable {
    private struct State {
        var waiting: [(batch: [GroupCommitWriter.Pending], results: GroupCommitWriter.Results)] = []
        /// Whether the thread is answering a batch it has taken.
        var answering = false
        var finishing = false
        var finished = false
    }

    // `condition` guards `state`.
    private let condition = NSCondition()
    nonisolated(unsafe) private var state = State()

    init() {
        NamedThread.start("uc-answerer", niceness: GroupCommitWriter.niceness) { [self] in run() }
    }

    /// Whether batches handed over are still being answered: a batch answered by the writer
    /// meanwhile would overtake them.
    var isBusy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return state.answering || !state.waiting.isEmpty
    }

    /// Queues a committed batch's results for its callers.
    func answer(_ batch: [GroupCommitWriter.Pending], _ results: GroupCommitWriter.Results) {
        condition.lock()
        precondition(!state.finishing, "a batch handed over after finish() would never be answered")
        state.waiting.append((batch, results))
        condition.broadcast()
        condition.unlock()
    }

    /// Answers everything queued, then ends the thread; returns once it has.
    func finish() {
        condition.lock()
        state.finishing = true
        condition.broadcast()
        while !state.finished { condition.wait() }
        condition.unlock()
    }

    /// Resumes each caller of `batch` with its result, on the calling thread.
    static func resume(_ batch: [GroupCommitWriter.Pending], _ results: GroupCommitWriter.Results) {
        for (pending, result) in zip(batch, results) {
            pending.answer.set(pending.index, result)
        }
    }

    private func run() {
        condition.lock()
        while true {
            while state.waiting.isEmpty && !state.finishing { condition.wait() }
            if state.waiting.isEmpty { break }
            let taken = state.waiting
            state.waiting = []
            state.answering = true
            condition.unlock()
            for (batch, results) in taken { Self.resume(batch, results) }
            condition.lock()
            state.answering = false
        }
        state.finished = true
        condition.broadcast()
        condition.unlock()
    }
}
