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
    /// process. Their default actions are restored first, so a second signal ends it at once.
    /// Called once, as the command starts.
    public static func onFirst(_ handler: @escaping @Sendable (Int32) -> Void) {
        for signalNumber in stopping {
            // Before the source: on Linux, dispatch installs its own handler later, on a thread of
            // its own, and an `SIG_IGN` set after it would leave the signal ignored for good.
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                for other in stopping { signal(other, SIG_DFL) }
                handler(signalNumber)
            }
            source.activate()
            sources.append(source)  // kept for the life of the process
        }
    }

    /// Only appended to, by ``onFirst(_:)``, which a command calls once as it starts.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
}
