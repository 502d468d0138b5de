import Foundation
import UploadCore

/// Runs programs the benchmark compares against or drives (lmdb-baseline, wrk, the servers).
enum Processes {
    /// Runs `executable` to the end, killing it after `timeout`. - Returns: its standard
    /// output. - Throws: on a non-zero exit or the timeout.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(600)) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Both pipes drain on their own threads, so a full pipe never blocks the child and the
        // deadline below is always checked.
        let output = Box<Data>(), errors = Box<Data>()
        Thread { output.value = out.fileHandleForReading.readDataToEndOfFile() }.start()
        Thread { errors.value = err.fileHandleForReading.readDataToEndOfFile() }.start()
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now > deadline && !timedOut {
                timedOut = true
                process.terminate()
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        while output.value == nil || errors.value == nil { Thread.sleep(forTimeInterval: 0.001) }
        guard !timedOut else { throw BenchError("\(executable) took longer than \(timeout) and was stopped") }
        guard process.terminationStatus == 0 else {
            throw BenchError("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: errors.value ?? Data(), as: UTF8.self))")
        }
        return String(decoding: output.value ?? Data(), as: UTF8.self)
    }

    /// Finds `name` on PATH.
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// `key=value` fields of a result line such as wrk's WRKRESULT.
    static func fields(_ line: Substring) -> [String: String] {
        var fields: [String: String] = [:]
        for part in line.split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { continue }
            fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
        }
        return fields
    }
}

/// A value written by one thread and read by another after it finished.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    var value: T? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// A server process started for the benchmark and stopped (SIGTERM) when done.
final class ServerProcess {
    let process = Process()
    private(set) var port = 0
    /// Seconds from launching the process to its ready line.
    private(set) var secondsToReady = 0.0

    /// Starts `executable` and waits for a stdout line containing `readyMarker` followed by
    /// `host:port`.
    init(_ executable: String, _ arguments: [String], readyMarker: String) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        let started = ContinuousClock.now
        try process.run()
        // A server that never gets ready is stopped, which ends the read below.
        let process = self.process
        let ready = Box<Bool>()
        Thread {
            Thread.sleep(forTimeInterval: 60)
            if ready.value == nil { process.terminate() }
        }.start()
        defer { ready.value = true }
        var buffer = Data()
        let handle = out.fileHandleForReading
        while true {
            let chunk = handle.availableData
            guard !chunk.isEmpty else { throw BenchError("\(executable) exited before it was ready") }
            buffer.append(chunk)
            let text = String(decoding: buffer, as: UTF8.self)
            if let range = text.range(of: readyMarker), let end = text[range.upperBound...].firstIndex(where: { $0 == " " || $0 == "\n" }) {
                secondsToReady = (ContinuousClock.now - started).seconds
                let address = text[range.upperBound..<end]
                port = Int(address.split(separator: ":").last ?? "") ?? 0
                break
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        Thread { while !handle.availableData.isEmpty {} }.start()
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { stop() }
}
