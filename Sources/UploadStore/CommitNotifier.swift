/// Tells readers that follow the log (live feeds) when new events have committed. The writer only
/// publishes a position and resumes waiters, never waits on a reader, so a slow consumer can never
/// stall it.
final class CommitNotifier: Sendable {
    private struct State {
        var tail: UInt64 = 0
        /// How many commits (and tails read under the append lock) were announced: a read of the
        /// tail taken before the last of them may be stale.
        var commits: UInt64 = 0
        var closed = false
        var nextId = 0
        var waiters: [Int: (after: UInt64, continuation: CheckedContinuation<Void, Never>)] = [:]
    }

    private let state = Locked(State())

    /// Called by the writer after each commit.
    func committed(upTo position: UInt64) {
        let ready = state.withLock { state in
            state.tail = max(state.tail, position)
            state.commits += 1
            let ready = state.waiters.filter { $0.value.after < position }
            for id in ready.keys { state.waiters[id] = nil }
            return ready.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    /// The log's tail as just read from it, which may be below what was announced: a failover
    /// to a standby that had not received the last commits loses them, and a tail left above the
    /// log would wake its followers at once, again and again (each finding nothing to read) until
    /// the log grew past it.
    /// - Parameter commitsBefore: ``commits`` before the tail was read: when a commit was announced
    ///   since, the read may predate it, and lowers nothing.
    func observed(tail position: UInt64, commitsBefore: UInt64? = nil) {
        let ready = state.withLock { state in
            let current = commitsBefore.map { $0 == state.commits } ?? true
            state.tail = current ? position : max(state.tail, position)
            // A tail read under the append lock also outdates any read begun before it.
            if commitsBefore == nil { state.commits += 1 }
            let ready = state.waiters.filter { $0.value.after < position }
            for id in ready.keys { state.waiters[id] = nil }
            return ready.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    /// Wakes every waiter for good: the store is closing.
    func close() {
        let all = state.withLock { state in
            state.closed = true
            defer { state.waiters = [:] }
            return state.waiters.values.map(\.continuation)
        }
        for continuation in all { continuation.resume() }
    }

    /// Returns once an event after `position` has committed (at once if one has), when the store
    /// closes, or when the task is cancelled. - Returns: whether events after `position` exist.
    @discardableResult
    func wait(after position: UInt64) async -> Bool {
        let id = state.withLock { state -> Int in
            state.nextId += 1
            return state.nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.closed || state.tail > position || Task.isCancelled { return true }
                    state.waiters[id] = (position, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation = state.withLock { $0.waiters.removeValue(forKey: id)?.continuation }
            continuation?.resume()
        }
        return state.withLock { $0.tail > position }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// How many commits were announced so far.
    var commits: UInt64 { state.withLock { $0.commits } }

    /// The newest position announced so far.
    var tail: UInt64 { state.withLock { $0.tail } }

    /// ``EventStore/waitForEvents(after:timeout:)`` for a store that publishes its commits here:
    /// waits until an event after `position` commits, or `timeout` passes (so that a follower also
    /// sees what no notification announced; it reads the log again then).
    /// - Returns: `false` when followers were stopped or the task was cancelled: stop following.
    func wait(after position: UInt64, timeout: Duration) async -> Bool {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait(after: position) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return !isClosed && !Task.isCancelled
    }
}
