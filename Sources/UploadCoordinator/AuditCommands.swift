import ArgumentParser
import Foundation
import LogHashing
import UploadCore
import UploadStore

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Audit the log: list upload initiations, print the Merkle root and signed checkpoints, prove and verify inclusion and consistency.",
        subcommands: [
            AuditInitiations.self, AuditRoot.self, AuditProof.self, AuditVerifyProof.self,
            AuditCheckpoint.self, AuditPublicKey.self, AuditConsistency.self, AuditVerifyConsistency.self,
        ])
}

struct AuditInitiations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "initiations",
        abstract: "List every upload initiation: position, time, registry, repository, uploadId, partSize and request metadata.")

    @OptionGroup var store: StoreOptions
    @Option(help: "Only this repository (in the registry of --registry-id).") var repository: String?
    @Option(help: "From this time on (ISO 8601, e.g. 2026-11-29 or 2026-11-29T16:00:00Z).") var since: String?
    @Option(help: "Before this time (ISO 8601).") var until: String?
    @Flag(help: "One JSON object per line instead of a table.") var json = false

    func run() async throws {
        let since = try since.map { try parseTime($0, "--since") }
        let until = try until.map { try parseTime($0, "--until") }
        let registryId = try self.store.settings().defaultRegistryId
        try withReader(store) { store in
            let ref = try repository.map { RepositoryRef(registryId: registryId, repositoryName: try Validation.repositoryName($0)) }
            let events = try store.initiations(repository: ref, since: since, until: until)
            if !json {
                print(["POSITION", "TIME", "REGISTRY", "REPOSITORY", "UPLOAD ID", "PART SIZE", "REQUEST ID", "SOURCE", "ADDRESS", "USER AGENT", "PRINCIPAL"].joined(separator: "\t"))
            }
            for envelope in events {
                guard case .uploadInitiated(let e) = envelope.event else { continue }
                let m = envelope.metadata
                if json {
                    printLine(.object(sorting: [
                        ("position", .uint(envelope.position)), ("recordedAt", .string(envelope.recordedAt.iso8601)),
                        ("registryId", .string(e.registryId)), ("repositoryName", .string(e.repositoryName)),
                        ("uploadId", .string(e.uploadId)), ("partSize", .uint(e.partSize)), ("metadata", m.json),
                        ("principal", .string(m.shownPrincipal)),  // as the table shows it: the metadata has none for the command line
                    ]))
                } else {
                    print([String(envelope.position), envelope.recordedAt.iso8601, e.registryId, e.repositoryName, e.uploadId, String(e.partSize),
                           m.requestId, m.source, m.sourceAddress ?? "-", m.userAgent?.shownSafely ?? "-", m.shownPrincipal].joined(separator: "\t"))
                }
            }
            if let ref, events.isEmpty, since == nil, until == nil {
                // The registry comes from this process's flags or environment, not the log's: say
                // which was searched, so that an empty answer is not taken for an empty repository.
                StandardStreams.error("note: no initiation in \(ref.repositoryName) of the registry \(ref.registryId); give --registry-id (or \(StoreOptions.Environment.registryId)) as serve has it\n")
            }
        }
    }
}

struct AuditRoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root", abstract: "Print the tree size and Merkle root of the log; record it to detect later rewrites.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        try withReader(store) { store in
            let (size, root) = try store.merkleRoot()
            printLine(.object([("treeSize", .uint(size)), ("rootHash", .string(root))]))
        }
    }
}

struct AuditProof: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proof", abstract: "Print an inclusion proof of an upload's UploadInitiated event against the current root, or an earlier one.")

    @OptionGroup var store: StoreOptions
    @Option(help: "The upload whose initiation to prove.") var uploadId: String
    @Option(help: "Prove against the root of the log's first N events (a checkpoint you saved, for verify-proof --trusted-checkpoint), not the current root.")
    var treeSize: UInt64?

    func run() async throws {
        try withReader(store) { store in
            let id = try Validation.uploadId(uploadId)
            guard let position = try store.initiationPosition(of: id) else {
                throw CommandError(.uploadNotFound, "No upload with id '\(id)' was ever initiated in this store")
            }
            printLine(try store.inclusionProof(position: position, treeSize: treeSize).json)
        }
    }
}

struct AuditVerifyProof: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-proof", abstract: "Check an inclusion proof offline (no store needed); exit 0 only when it holds.")

    @Option(help: "The proof, as printed by `audit proof` (- for standard input).") var file: String
    @Option(help: "A checkpoint you saved (a signed note, as GET /log/checkpoint gives it), with --public-key: the proof must be for its tree size and lead to its root.")
    var trustedCheckpoint: String?
    @Option(help: "The log's verifier key, or a file holding it, to check --trusted-checkpoint's signature.") var publicKey: String?
    @Option(help: "A root you recorded earlier (hex); the proof must lead to it. Without --trusted-checkpoint or this, only the proof's own consistency is checked.")
    var trustedRoot: String?
    @Option(help: "The tree size --trusted-root was recorded for: a path leads to one root for several sizes, so the size is proven only when given.")
    var trustedSize: UInt64?

    func validate() throws {
        if (trustedCheckpoint == nil) != (publicKey == nil) {
            throw ValidationError("--trusted-checkpoint and --public-key go together: the key checks the checkpoint's signature.")
        }
        if trustedCheckpoint != nil, trustedRoot != nil || trustedSize != nil {
            throw ValidationError("give --trusted-checkpoint or --trusted-root (with --trusted-size), not both.")
        }
        if trustedSize != nil, trustedRoot == nil { throw ValidationError("--trusted-size goes with --trusted-root.") }
        // Else a pasted `audit root` line, or a typo, failed as a root the proof does not lead to.
        if let trustedRoot, Hex.decode(trustedRoot)?.count != 32 {
            throw ValidationError("--trusted-root must be a root's 64 hex digits (`audit root` prints them as rootHash); got '\(String(trustedRoot.prefix(80)).shownSafely)'.")
        }
    }

    func run() throws {
        let text: String
        if file == "-" {
            do { text = String(decoding: try FileHandle.standardInput.readToEnd() ?? Data(), as: UTF8.self) } catch { throw ValidationError("cannot read standard input: \(error.localizedDescription)") }
        } else {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            text = String(decoding: data, as: UTF8.self)
        }
        do {
            var (root, size, log) = (trustedRoot?.lowercased(), trustedSize, "the log")
            if let trustedCheckpoint, let publicKey {
                let keyText = FileManager.default.fileExists(atPath: publicKey) ? try AuditVerifyConsistency.read(publicKey) : publicKey
                let checkpoint = try AuditVerifyConsistency.checkpoint(trustedCheckpoint, "--trusted-checkpoint", try NoteVerifier(keyText))
                (root, size, log) = (Hex.encode(checkpoint.rootHash), checkpoint.size, "the log '\(checkpoint.origin)'")
            }
            let proof = try InclusionProof(json: text)
            let event = try proof.verify(trustedRoot: root, trustedSize: size)
            let proven = "the \(event.event.type.name) at position \(proof.position)"
            if size != nil {
                print("OK: \(proven) is in \(log) of \(proof.treeSize) events with root \(proof.rootHash)")
            } else if root != nil {
                print("OK: \(proven) is in the tree with root \(proof.rootHash), the trusted root; the tree's size (\(proof.treeSize), as the proof names it) is not proven: give --trusted-size, or --trusted-checkpoint")
            } else {
                // Anyone can make a proof that leads to a root of their own: only a root known
                // otherwise ties it to this log.
                print("OK: \(proven) is in the tree of \(proof.treeSize) events with root \(proof.rootHash), the root the proof itself names: it proves the event is in the log only once that root is one you trust (--trusted-checkpoint, or --trusted-root with --trusted-size)")
            }
            printLine(event.json)
        } catch {
            StandardStreams.error("FAILED: \(error)\n")
            throw ExitCode(1)
        }
    }
}

/// ISO 8601: a date, midnight UTC (`2026-11-29`), or a time with its zone (`2026-11-29T16:00:00Z`,
/// `…+02:00`, fractions allowed), and nothing else: Foundation's formatters read a date or a time
/// at the start of any text and roll impossible days over, so a time without a zone, text after
/// it, or the 31st of November would quietly move the window an auditor asked for. Times are
/// recorded in whole milliseconds, so a finer one is rounded up: `--since` (from) and `--until`
/// (before) then take exactly the events at or after it, and before it.
func parseTime(_ given: String, _ flag: String) throws -> Timestamp {
    let refusal = "\(flag) must be an ISO 8601 date (midnight UTC) or a time with its zone, e.g. 2026-11-29 or 2026-11-29T16:00:00Z; got '\(given)'"
    let text = given.uppercased()  // RFC 3339 takes `t` and `z` too
    // ASCII digits only (`\d` takes any script's, which `Int` does not read).
    guard let parts = text.wholeMatch(of: /([0-9]{4}-[0-9]{2}-[0-9]{2})(?:T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2}))?/) else {
        let zoneless = text.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?/) != nil
        throw ValidationError(refusal + (zoneless ? ", a time without a zone (add Z for UTC)" : ""))
    }
    let day = ISO8601DateFormatter()
    day.formatOptions = [.withFullDate]
    // A day that exists reads back as itself; the hour, minute and second are within their
    // ranges, and so are the zone's hours and minutes (Foundation read `+24:00` and `+00:99` as
    // offsets of its own making).
    let zoneWithinRange = parts.6.map { zone in zone == "Z" || (Int(zone.dropFirst().prefix(2))! < 24 && Int(zone.suffix(2))! < 60) } ?? true
    guard let midnight = day.date(from: String(parts.1)), day.string(from: midnight) == parts.1, zoneWithinRange,
          (parts.2.map { Int($0)! < 24 } ?? true), (parts.3.map { Int($0)! < 60 } ?? true), (parts.4.map { Int($0)! < 60 } ?? true) else {
        throw ValidationError(refusal + ", a day or time that does not exist")
    }
    guard let hour = parts.2, let minute = parts.3, let second = parts.4, let zone = parts.6 else {
        return Timestamp(millisecondsSinceEpoch: Int64((midnight.timeIntervalSince1970 * 1000).rounded()))
    }
    // The whole seconds through Foundation, the fraction's digits here, rounded up.
    guard let date = ISO8601DateFormatter().date(from: "\(parts.1)T\(hour):\(minute):\(second)\(zone)") else { throw ValidationError(refusal) }
    let nanoseconds = parts.5.map { Int64($0 + String(repeating: "0", count: 9 - $0.count))! } ?? 0
    return Timestamp(millisecondsSinceEpoch: Int64(date.timeIntervalSince1970.rounded()) * 1000 + (nanoseconds + 999_999) / 1_000_000)
}
