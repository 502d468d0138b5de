import ArgumentParser
import Foundation
import LogHashing
import UploadCore
import UploadService
import UploadStore

/// `upload-replay`: proves that the live projections equal a deterministic rebuild from the log.
/// `upload-replay verify` is the same check, under the name auditors use: one command, two names.
@main
struct UploadReplay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload-replay",
        abstract: "Rebuild every projection from the log twice and compare digests with each other and with the live projections.",
        discussion: "`upload-replay --data-dir DIR …` runs `verify`: `upload-replay verify --help` lists its options and exit codes.",
        version: ProductVersion.current,
        subcommands: [Verify.self], defaultSubcommand: Verify.self)
}

/// The check. Opens the store read-only; never writes to it.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "The check `upload-replay` runs (the same with or without the word `verify`).",
        discussion: """
            Also checks the log: positions dense from 1 and every record decodes; and the blobs the \
            store names, in DATA/blobs (--blobs). Exits 0 when everything matches; 1 when \
            projections differ (naming the first differing key); 2 when the log is damaged (naming \
            the position); 3 when the store cannot be opened or checked (projections that cannot be \
            read are not compared, but the log is still checked); 4 when the store and its log \
            pass but blobs it names are missing from the folder or hold other bytes (naming them).
            """
    )

    @Option(help: "The data directory of the store to check (with --database-url, where its signing key and blobs are kept).")
    var dataDir: String

    @Option(help: ArgumentHelp("Check the store in this PostgreSQL database instead: postgres://USER[:PASS]@HOST:PORT/DB. [env: \(StoreBackends.databaseURLVariable)]"))
    var databaseUrl: String?

    @Option(help: "The log's verifier key, or a file holding it, to check the signature of every checkpoint the log signed. [default: the key of DATA/transparency-log.key, when there]")
    var publicKey: String?

    @Option(help: "How closely to check the blobs the store's layers and logos name, in DATA/blobs: sizes (each there, of the size its layer records), contents (each also hashed: every byte read), or none (the store alone).")
    var blobs: NamedBlobCheck.Depth = .sizes

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    func run() throws {
        StandardStreams.openTheMissingOnes()
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
                StandardStreams.error("note: checkpoint signatures not checked (\(error)); give --public-key to check them\n")
            }
        }
        StoreBackends.warnWhenTheEnvironmentOverrides(flag: databaseUrl, dataDirectory: dataDir)
        let progress = showProgress ? meter.update : nil
        let report = database.map { Replayer.verify(databaseURL: $0, checkpointKey: key, progress: progress) }
            ?? Replayer.verify(directory: dataDir, checkpointKey: key, progress: progress)
        if showProgress { StandardStreams.error("\r\u{1B}[K") }
        let blobCheck = checkBlobs(report, databaseURL: database)
        // Which store was checked, named in the report: a folder, or a database without its password.
        let store = database.map { "PostgreSQL at \(StoreBackends.shown($0))" } ?? "LMDB in \(dataDir)"
        if json {
            print(reportJSON(report, blobCheck, store: store))
        } else {
            printText(report, blobCheck, store: store)
        }
        if let failure = report.failure { throw ExitCode(failure.exitCode) }
        if case .checked(let check) = blobCheck, !check.passed { throw ExitCode(4) }
        if case .failed = blobCheck { throw ExitCode(3) }
        // A report that could not be written whole is no pass.
        if let reason = StandardStreams.whyNotPrintedWhole() {
            StandardStreams.error("FAILED: standard output could not take the report: \(reason)\n")
            throw ExitCode(3)
        }
    }

    /// What became of the blob check: not asked for, not run (the store could not be read), run, or failed.
    enum BlobCheckOutcome {
        case skipped(String)
        case checked(NamedBlobCheck)
        case failed(String)
    }

    /// The blobs the store names, looked at in the data folder once the store itself was checked.
    private func checkBlobs(_ report: Replayer.Report, databaseURL: String?) -> BlobCheckOutcome {
        guard blobs != .none else { return .skipped("not checked (--blobs none)") }
        if case .unusable = report.failure { return .skipped("not checked: the store could not be read") }
        do {
            let reader = try StoreBackends.openForReading(directory: dataDir, databaseURL: databaseURL)
            return .checked(try BlobStore(existing: dataDir).check(blobsNamedBy: reader, depth: blobs))
        } catch {
            return .failed("could not be checked: \(error)")
        }
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
                StandardStreams.error("FAILED: \(problem)\n")
            }
            throw ExitCode(3)
        }
    }

    private func printText(_ r: Replayer.Report, _ blobCheck: BlobCheckOutcome, store: String) {
        print("store:            \(store)")
        if let failure = r.failure, case .unusable = failure, r.events == 0 {  // no store, or one not migrated: no count to give
            StandardStreams.error("FAILED: \(failure)\n")
            return
        }
        print("events in log:    \(r.events)")
        // A log that failed its checks was not scanned through: no rate to give.
        if r.eventsScanned > 0 {
            print("events scanned:   \(r.eventsScanned) (the log twice) in \(String(format: "%.3f", r.seconds)) s (\(Int(r.eventsPerSecond)) events/s)")
        }
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
        let blobFailure: String?
        switch blobCheck {
        case .skipped(let why):
            print("blobs:            \(why)")
            blobFailure = nil
        case .failed(let why):
            print("blobs:            \(why)")
            blobFailure = "the blobs the store names \(why)"
        case .checked(let check):
            let how = blobs == .contents ? "each hashed (\(check.bytesHashed) bytes read)" : "each looked for with its recorded size"
            print("blobs:            \(check.named) named in \(dataDir)/blobs, \(how)")
            for problem in check.problems { StandardStreams.error("blob problem: \(problem)\n") }
            let kinds = [(check.missing, "missing or unreadable"), (check.wrongSize, "of another size"), (check.wrongContents, "with other bytes")]
            blobFailure = check.passed ? nil : """
                of the \(check.named) blobs the store names, \(kinds.filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ")) \
                (blob problem lines name \(check.problems.count)); if \(dataDir) is not the folder serve keeps them in, give that \
                one with --data-dir, or check the store alone with --blobs none
                """
        }
        if let failure = r.failure {
            StandardStreams.error("FAILED: \(failure)\n")
        } else if let blobFailure {
            StandardStreams.error("FAILED: \(blobFailure)\n")
        } else {
            let at = r.checkpoint.map { $0 < r.events ? " at their checkpoint (\($0) of \(r.events))" : "" } ?? ""
            let blobsToo = if case .checked = blobCheck { ", and the folder holds every blob it names" } else { "" }
            print("OK: the log is intact and the live projections equal a deterministic rebuild" + at + blobsToo)
        }
    }

    private func reportJSON(_ r: Replayer.Report, _ blobCheck: BlobCheckOutcome, store: String) -> String {
        let blobsJSON: JSONValue
        let blobsPassed: Bool
        switch blobCheck {
        case .skipped(let why):
            (blobsJSON, blobsPassed) = (.object(sorting: [("checked", .bool(false)), ("note", .string(why))]), true)
        case .failed(let why):
            (blobsJSON, blobsPassed) = (.object(sorting: [("checked", .bool(false)), ("failure", .string(why))]), false)
        case .checked(let check):
            blobsPassed = check.passed
            blobsJSON = .object(sorting: [
                ("checked", .bool(true)), ("depth", .string(blobs.rawValue)), ("named", .uint(UInt64(check.named))),
                ("missing", .uint(UInt64(check.missing))), ("wrongSize", .uint(UInt64(check.wrongSize))),
                ("wrongContents", .uint(UInt64(check.wrongContents))), ("bytesHashed", .uint(check.bytesHashed)),
                ("problems", .array(check.problems.map(JSONValue.string))),
            ])
        }
        return JSONValue.object(sorting: [
            ("ok", .bool(r.passed && blobsPassed)),
            ("blobs", blobsJSON),
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
        StandardStreams.error(line)
    }
}

extension NamedBlobCheck.Depth: ExpressibleByArgument {}
