import Foundation

/// Counts events processed by any thread and reports every 65,536th, and the end. Reports are
/// made under the counter's lock, so the caller's callback never runs on two threads at once.
final class ProgressCounter: @unchecked Sendable {
    private let done = Locked<UInt64>(0)
    private let total: UInt64
    private let progress: Replayer.Progress?

    init(total: UInt64, _ progress: Replayer.Progress?) {
        self.total = total
        self.progress = progress
    }

    /// A counter for one thread's work, to call once per event: it takes the lock only every
    /// 4,096 events.
    var tick: () -> Void {
        guard progress != nil else { return {} }
        var local: UInt64 = 0
        return { [self] in
            local += 1
            guard local == 4096 else { return }
            local = 0
            add(4096)
        }
    }

    func finish() {
        done.withLock { done in
            done = total
            progress?(total, total)
        }
    }

    private func add(_ count: UInt64) {
        done.withLock { done in
            done += count
            if done % 65_536 == 0, done < total { progress?(done, total) }
        }
    }
}

/// Work started on a thread of its own at once; ``result()`` waits for it. Its starter must
/// wait for it on every path (it may hold the environment open): `defer { work.wait() }`.
final class BackgroundWork<T: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private var outcome: Result<T, any Error>?
    private var waited = false

    private var work: (@Sendable () throws -> T)?

    init(_ work: @escaping @Sendable () throws -> T) {
        self.work = work
        // The thread holds only this object; the work (and what it captured, such as an open
        // environment) is released before the waiter wakes.
        NamedThread.start("uc-background") { [self] in
            outcome = Result(catching: self.work!)
            self.work = nil
            finished.signal()
        }
    }

    /// Waits for the work to end (at once if it already has). Only the starting thread calls it.
    func wait() {
        guard !waited else { return }
        finished.wait()
        waited = true
    }

    /// Waits for the work; its value, or what it threw.
    func result() throws -> T {
        wait()
        return try outcome!.get()
    }
}
