import ArgumentParser
import Foundation
import LogHashing
import UploadCore
import UploadStore

/// `upload-replay`: proves that the live projections equal a deterministic rebuild from the log.
/// `upload-replay verify` is the same check, under the name auditors use: one command, two names.
@main
struct UploadReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload-replay",
        abstract: "Rebuild every projection from the log twice and compare digests with each other and with the live projections.",
        version: ProductVersion.current,
        subcommands: [Verify.self], defaultSubcommand: Verify.self)
}

/// The check. Opens the store read-only; never writes to it.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "The check `upload-replay` runs (the same with or without the word `verify`).",
        discussion: """
            Also checks the log: positions dense from 1 and every record decodes. Exits 0 when \
            everything matches; 1 when projections differ (naming the first differing key); 2 when \
            the log is damaged (naming the position); 3 when the store cannot be opened or checked \
            (projections that cannot be read are not compared, but the log is still checked).
            """
    )

    @Option(help: "The data directory of the store to check (with --database-url, where its signing key is kept).")
    var dataDir: String

    @Option(help: ArgumentHelp("Check the store in this PostgreSQL database instead: postgres://USER[:PASS]@HOST:PORT/DB. [env: \(StoreBackends.databaseURLVariable)]"))
    var databaseUrl: String?

    @Option(help: "The log's verifier key, or a file holding it, to check the signature of every checkpoint the log signed. [default: the key of DATA/transparency-log.key, when there]")
    var publicKey: String?

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    func run() throws {
        let database: String?
        do { database = try StoreBackends.databaseURL(flag: databaseUrl) } catch let error as StoreError { throw ValidationError("--database-url: \(error.message)") }
        if database == nil, !CheckInAChild.isChild { try checkInAChild() }
        CheckInAChild.endWithTheParent()
        // Progress goes to a terminal only: never into a pipe, a file, or --json output.
        let showProgress = !json && isatty(STDERR_FILENO) == 1
        let meter = ProgressMeter()
        var key: NoteVerifier?
        if let publicKey {
            do {
                key = try NoteVerifier(FileManager.default.fileExists(atPath: publicKey) ? String(contentsOfFile: publicKey, encoding: .utf8) : publicKey)
            } catch {
                throw ValidationError("--public-key: \(error)")
            }
        } else {
            // The data directory's own key, when this user may read it; the roots are checked
            // either way. Whoever can write the directory can replace that key too: an auditor
            // gives the key it keeps (--public-key).
            do {
                key = try LogSigningKey.verifier(path: nil, dataDirectory: dataDir)
                if key == nil { throw StoreError(.io, "the data directory holds no log key") }
            } catch {
                FileHandle.standardError.write(Data("note: checkpoint signatures not checked (\(error)); give --public-key to check them\n".utf8))
            }
        }
        StoreBackends.warnWhenTheEnvironmentOverrides(flag: databaseUrl, dataDirectory: dataDir)
        let progress = showProgress ? meter.update : nil
        let report = database.map { Replayer.verify(databaseURL: $0, checkpointKey: key, progress: progress) }
            ?? Replayer.verify(directory: dataDir, checkpointKey: key, progress: progress)
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        // Which store was checked, named in the report: a folder, or a database without its password.
        let store = database.map { "PostgreSQL at \(StoreBackends.shown($0))" } ?? "LMDB in \(dataDir)"
        if json {
            print(reportJSON(report, store: store))
        } else {
            printText(report, store: store)
        }
        if let failure = report.failure { throw ExitCode(failure.exitCode) }
    }

    /// Runs the check of an LMDB store in a child (``CheckInAChild``) and ends as it ended: a
    /// child that LMDB stopped on a damaged page is reported as a store that cannot be read.
    private func checkInAChild() throws -> Never {
        let ending = try CheckInAChild.run()
        switch ending {
        case .exited(let status): throw ExitCode(status)
        case .interrupted(let signal): throw ExitCode(128 + signal)
        case .stoppedByDamage, .trapped:
            let store = "LMDB in \(dataDir)", problem = CheckInAChild.problem(ending, dataDir: dataDir) ?? ""
            if json {
                print(JSONValue.object(sorting: [("ok", .bool(false)), ("store", .string(store)), ("failure", .string(problem))]).text)
            } else {
                print("store:            \(store)")
                FileHandle.standardError.write(Data("FAILED: \(problem)\n".utf8))
            }
            throw ExitCode(3)
        }
    }

    private func printText(_ r: Replayer.Report, store: String) {
        print("store:            \(store)")
        if let failure = r.failure, case .unusable = failure, r.events == 0 {  // no store, or one not migrated: no count to give
            FileHandle.standardError.write(Data("FAILED: \(failure)\n".utf8))
            return
        }
        print("events in log:    \(r.events)")
        print("events scanned:   \(r.eventsScanned) in \(String(format: "%.3f", r.seconds)) s (\(Int(r.eventsPerSecond)) events/s)")
        for (i, digest) in r.rebuildDigests.enumerated() { print("rebuild \(i + 1) digest: \(digest)") }
        if let live = r.liveDigest { print("live digest:      \(live)") }
        if let checkpoint = r.checkpoint {
            print("checkpoint:       \(checkpoint)")
            if checkpoint < r.events {
                // Compared with a rebuild at the checkpoint, not with the rebuilds' digests above.
                print("projections:      \(r.events - checkpoint) events behind the log (a store open, or killed, between its two commits): the live digest is a rebuild's at \(checkpoint)")
            }
        }
        if let root = r.merkleRoot { print("merkle root:      \(root) (tree size \(r.events))") }
        if let kept = r.kept {
            let signatures = kept.signaturesChecked ? "signatures checked" : "signatures NOT checked: give --public-key"
            print("signed checkpoints: \(kept.count), each consistent with the tree (\(signatures))")
            let unsigned = r.events - min(r.events, kept.signedUpTo ?? 0)
            print("signed up to:     \(kept.signedUpTo ?? 0) of \(r.events) events" + (unsigned == 0 ? "" : "; the last \(unsigned) are held by no signature yet"))
        }
        if let failure = r.failure {
            FileHandle.standardError.write(Data("FAILED: \(failure)\n".utf8))
        } else {
            let at = r.checkpoint.map { $0 < r.events ? " at their checkpoint (\($0) of \(r.events))" : "" } ?? ""
            print("OK: the log is intact and the live projections equal a deterministic rebuild" + at)
        }
    }

    private func reportJSON(_ r: Replayer.Report, store: String) -> String {
        JSONValue.object(sorting: [
            ("ok", .bool(r.passed)),
            ("store", .string(store)),
            ("events", .uint(r.events)),
            ("eventsScanned", .uint(r.eventsScanned)),
            ("milliseconds", .uint(UInt64(r.seconds * 1000))),
            ("eventsPerSecond", .uint(UInt64(r.eventsPerSecond))),
            ("rebuildDigests", .array(r.rebuildDigests.map(JSONValue.string))),
            ("liveDigest", r.liveDigest.map(JSONValue.string)),
            ("checkpoint", r.checkpoint.map(JSONValue.uint)),
            ("projectionsBehind", r.checkpoint.map { .uint(r.events - min(r.events, $0)) }),
            ("merkleRoot", r.merkleRoot.map(JSONValue.string)),
            ("signedCheckpoints", r.kept.map { .uint(UInt64($0.count)) }),
            ("signedUpTo", r.kept.map { .uint($0.signedUpTo ?? 0) }),
            ("signaturesChecked", r.kept.map { .bool($0.signaturesChecked) }),
            ("failure", r.failure.map { .string("\($0)") }),
        ]).text
    }
}

/// One status line on the terminal: events done, rate, and time left.
final class ProgressMeter {
    private let start = ContinuousClock.now
    private var lastShown = ContinuousClock.now

    func update(done: UInt64, total: UInt64) {
        let now = ContinuousClock.now
        guard now - lastShown > .milliseconds(250) || done == total else { return }
        lastShown = now
        let elapsed = now - start
        let seconds = elapsed.seconds
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let left = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "\r\u{1B}[K%llu/%llu events (%.0f%%), %.0f events/s, %.0f s left", done, total, 100 * Double(done) / Double(max(total, 1)), rate, left)
        FileHandle.standardError.write(Data(line.utf8))
    }
}
