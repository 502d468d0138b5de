import Foundation

/// Writes to standard output and error that a closed, full or broken stream cannot crash:
/// Foundation's `FileHandle.write(_:)` traps on a failed write, so `serve` started with its output
/// on `/dev/full`, closed, or piped to a reader that had exited died (SIGILL) just after it
/// listened, and a tool's exit code said it had crashed rather than what it found.
public enum StandardStreams {
    /// Writes `text` to standard error whole (retrying after an interruption); gives up quietly
    /// when the stream takes nothing: there is nowhere else to say so.
    public static func error(_ text: String) { _ = write(text, to: STDERR_FILENO) }

    /// Writes `text` to standard output whole. - Returns: whether all of it was written.
    @discardableResult
    public static func output(_ text: String) -> Bool { write(text, to: STDOUT_FILENO) }

    /// Why standard output did not take everything `print` gave it (flushed now), or `nil` when it
    /// did: a write failed, as to a full disk, or a reader that went away. The reason is read as
    /// the failure happens; an earlier failed write left only its mark on the stream, not its
    /// `errno` (which later calls may have changed), so it is said as such.
    public static func whyNotPrintedWhole() -> String? {
        // C's `stdout`, looked up: Swift 6 refuses to read the mutable C global itself.
        let output = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "stdout").map { $0.load(as: UnsafeMutablePointer<FILE>.self) }
        if fflush(output) != 0 { return String(cString: strerror(errno)) }
        if let output, ferror(output) != 0 { return "an earlier write to it failed" }
        return nil
    }

    /// Opens `/dev/null` on any of descriptors 0, 1 and 2 that the process was started without,
    /// before anything else opens a file: the next file opened (LMDB's `lock.mdb`) took
    /// descriptor 2, and the log was written into it.
    public static func openTheMissingOnes() {
        for descriptor in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] where fcntl(descriptor, F_GETFD) == -1 && errno == EBADF {
            let opened = open("/dev/null", descriptor == STDIN_FILENO ? O_RDONLY : O_WRONLY)
            if opened >= 0, opened != descriptor {
                dup2(opened, descriptor)
                close(opened)
            }
        }
    }

    static func write(_ text: String, to descriptor: Int32) -> Bool {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            bytes = bytes.dropFirst(written)
        }
        return true
    }
}
