import Foundation

/// How a one-shot command finishes the step it is in when it is stopped (Ctrl-C, an init
/// system's SIGTERM, the SIGHUP of a closed terminal or ssh session) before it ends: `backup` and
/// `copy-store` remove their partial folder (``PartialFolder/removeOnInterrupt()``),
/// `garbage-collect` finishes the blob it is removing (``BlobStore/finishTheBlobOnInterrupt()``).
/// `serve` handles its signals itself.
public enum Interrupts {
    /// The signals that stop a command.
    public static let stopping: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Runs `handler` on a thread of its own at the first of ``stopping``; it must end the
    /// process. A signal the process was started ignoring is left ignored (`nohup` asks to outlive
    /// the terminal, a shell's `&` job ignores Ctrl-C). Once one came, SIGINT and SIGTERM meet
    /// their default actions again, so that a second ends the process at once; SIGHUP stays
    /// ignored, since a closed terminal's shell and then the kernel each send one.
    /// Called once, as the command starts.
    public static func onFirst(_ handler: @escaping @Sendable (Int32) -> Void) {
        let handled = stopping.filter { !isIgnored($0) }
        for signalNumber in handled {
            // Before the source: on Linux, dispatch installs its own handler later, on a thread of
            // its own, and an `SIG_IGN` set after it would leave the signal ignored for good.
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                for other in handled { signal(other, other == SIGHUP ? SIG_IGN : SIG_DFL) }
                handler(signalNumber)
            }
            source.activate()
            sources.append(source)  // kept for the life of the process
        }
    }

    /// Whether `signalNumber` is ignored now (as the process started, until something changes
    /// it): read by setting it ignored and putting back what was there.
    public static func isIgnored(_ signalNumber: Int32) -> Bool {
        let previous = signal(signalNumber, SIG_IGN)
        signal(signalNumber, previous)
        return unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    /// Only appended to, by ``onFirst(_:)``, which a command calls once as it starts.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
}
