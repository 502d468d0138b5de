import Foundation

/// The store's own threads, each named so that `top -H`, `perf` and `/proc/<pid>/task/*/comm`
/// say what it is. Without a name of its own a thread keeps its creator's: the writer showed as
/// the cooperative pool's `oot.default-qos`, which hid it in every profile.
public enum NamedThread {
    /// Linux's limit on a thread's name (16 bytes with its terminating zero); a longer one is
    /// refused outright.
    public static let longestName = 15

    /// Starts `body` on a new thread called `name`, at `niceness` when given and allowed (a
    /// negative one needs `CAP_SYS_NICE` or `RLIMIT_NICE`; without them the thread keeps the
    /// process's).
    public static func start(_ name: String, niceness: Int32? = nil, _ body: @escaping @Sendable () -> Void) {
        precondition(name.utf8.count <= longestName, "a thread's name is at most \(longestName) bytes on Linux: \(name)")
        Thread {
            nameThisThread(name)
            if let niceness { keepToThisThread(niceness: niceness) }
            body()
        }.start()
    }

    /// Sets the calling thread's niceness (on Linux a nice value is a thread's, and 0 names the
    /// calling thread), after `SCHED_RESET_ON_FORK`, so that the threads it starts (the
    /// dispatch pool's, which it may start by resuming a caller) start at niceness 0, not at its.
    private static func keepToThisThread(niceness: Int32) {
        var parameter = sched_param(sched_priority: 0)
        let resetOnFork: Int32 = 0x4000_0000  // SCHED_RESET_ON_FORK, which Glibc's module does not export
        guard sched_setscheduler(0, SCHED_OTHER | resetOnFork, &parameter) == 0 else { return }
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness)
    }

    /// Names the calling thread through `/proc`: Foundation's `Thread.name` does not reach the
    /// kernel on Linux, and Swift does not import `pthread_setname_np` (a GNU extension). A
    /// failure leaves only the name as it was.
    private static func nameThisThread(_ name: String) {
        let file = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard file >= 0 else { return }
        defer { close(file) }
        _ = Array(name.utf8).withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
    }
}
