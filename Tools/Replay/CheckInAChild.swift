import Foundation

/// The check of an LMDB store, run in a child process of `upload-replay` itself.
///
/// LMDB keeps no checksums: a page damaged on disk can stop it on one of its assertions or a
/// memory fault (SIGABRT, SIGSEGV) where an error was wanted, and the check meant to report the
/// damage would die with it; under a pipe it could hang besides, Swift's backtracer waiting on
/// two crashing threads. So the check runs in a child, without the backtracer, and the parent
/// reports such a death as the store unreadable (exit 3), in the report's own form.
enum CheckInAChild {
    /// Set in the child's environment to the parent's process id: it runs the check itself.
    static let marker = "UPLOAD_REPLAY_CHECKING"

    /// The parent that runs this process as its check; `nil` in the parent itself.
    static let parent: pid_t? = ProcessInfo.processInfo.environment[marker].flatMap { pid_t($0) }

    static var isChild: Bool { parent != nil }

    /// In the child: ends it soon after its parent ends, however that ended (a SIGKILL, a
    /// terminal closed), so that no check runs on, orphaned, holding the store's readers and
    /// writing to an output nobody reads. Polled, as a parent's end signals its child nothing.
    static func endWithTheParent() {
        guard let parent else { return }
        let watcher = Thread {
            while getppid() == parent { usleep(200_000) }
            _exit(EXIT_FAILURE)
        }
        watcher.start()
    }

    /// How the child ended.
    enum Ending {
        case exited(Int32)
        /// On a signal that a damaged page gives LMDB (its assertions abort; a bad pointer or a
        /// zeroed page size faults). Swift stops on a few of its own failures with SIGABRT too,
        /// so the report names both.
        case stoppedByDamage(Int32)
        /// On a trap: Swift's own stop on a failed check (SIGILL, SIGTRAP), a fault of the checker,
        /// which the store's damage must not be blamed for.
        case trapped(Int32)
        /// On any other signal (an interrupt, a kill): not the store's doing.
        case interrupted(Int32)
    }

    /// Runs this program again, with the same arguments, as the child that checks; its standard
    /// input, output and error are this process's.
    static func run() throws -> Ending {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = Array(CommandLine.arguments.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment[marker] = "\(getpid())"
        environment["SWIFT_BACKTRACE"] = "enable=no"
        child.environment = environment
        try child.run()
        child.waitUntilExit()
        let status = child.terminationStatus
        guard child.terminationReason == .uncaughtSignal else { return .exited(status) }
        if [SIGABRT, SIGSEGV, SIGBUS, SIGFPE].contains(status) { return .stoppedByDamage(status) }
        return [SIGILL, SIGTRAP].contains(status) ? .trapped(status) : .interrupted(status)
    }

    /// What the report says of a check that ended so (`nil` for an exit or an interrupt).
    static func problem(_ ending: Ending, dataDir: String) -> String? {
        switch ending {
        case .stoppedByDamage(let signal):
            "the store in \(dataDir) could not be read to its end: LMDB stopped on signal \(signal) (\(String(cString: strsignal(signal)))), "
                + "as it does on a page damaged on disk (it keeps no checksums; an assertion it made is printed above). Restore the data folder from a backup; "
                + "when only its projections are damaged, move \(dataDir)/projections away and run `upload-coordinator migrate` to rebuild them from the log. "
                + "With no assertion of LMDB's above, it may be a fault of upload-replay's own: report it with this output"
        case .trapped(let signal):
            "the check of \(dataDir) stopped on signal \(signal) (\(String(cString: strsignal(signal)))), a failed check of upload-replay's own, "
                + "not a sign of damage: keep the store as it is, and report this with the output above"
        case .exited, .interrupted: nil
        }
    }
}
