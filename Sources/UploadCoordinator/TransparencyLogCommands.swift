import ArgumentParser
import Foundation
import LMDBKit
import LogHashing
import UploadCore
import UploadService
import UploadStore

/// The log's signing key and origin, shared by `serve` and the audit commands that sign.
struct LogKeyOptions: ParsableArguments {
    @Option(help: "The log's Ed25519 signing key, in the signed-note form `PRIVATE+KEY+<name>+<id>+<key>` (Go's note.GenerateKey writes it). [default: DATA/transparency-log.key, which serve makes on its first start]")
    var logKey: String?

    @Option(help: "The origin line of the log's checkpoints. [default: the origin the log already signs, else the key's name; the key serve makes is named after --log-origin, or upload-coordinator/<registry id>/<the first 8 hex digits of SHA-256 of its public key>]")
    var logOrigin: String?

    func validate() throws {
        if let logOrigin, !Checkpoint.isValidOrigin(logOrigin) {
            throw ValidationError("--log-origin must be printable, without spaces or '+' (the log's key is named after it); got '\(logOrigin)'.")
        }
    }

    /// The signer and the log's identity, checked against the checkpoints `store` kept. Without
    /// `--log-origin`, the origin is the one the log already signs, else the key's name.
    ///
    /// - Parameter claimsLog: make the data directory's key when it is missing and `store` has
    ///   signed nothing yet, and sign the log's first checkpoint at once when it has signed
    ///   nothing (only `serve` does: otherwise a command run before `serve --log-key` would give
    ///   the log a second key). Signing at once claims the log for this key before anything is
    ///   served: two nodes of one PostgreSQL log that each made a key in their own data folder
    ///   would otherwise both serve, and one of them fail at its first signing. The one that
    ///   loses the claim stops with the reason, and removes the key it just made.
    func signer(dataDirectory: String, registryId: String, store: (any EventStore)?, claimsLog: Bool = false) throws -> (signer: NoteSigner, identity: LogIdentity) {
        let kept = try store?.read { try $0.latestSignedCheckpoint() }
        let defaultKey = LogSigningKey.defaultPath(dataDirectory: dataDirectory)
        let keyMissing = logKey == nil && !FileManager.default.fileExists(atPath: defaultKey)
        if keyMissing, !claimsLog || kept != nil {
            throw ValidationError("The data directory holds no log key (serve makes one on its first start); give the log's key with --log-key.")
        }
        let signer = try LogSigningKey.load(path: logKey, dataDirectory: dataDirectory) {
            try logOrigin.map { try NoteSigner.generate(name: $0) } ?? NoteSigner.generate(namedAfter: "upload-coordinator/\(registryId)")
        }
        let identity = LogIdentity(verifier: signer.verifier, origin: try logOrigin ?? kept.map { try $0.checkpoint().origin } ?? signer.name)
        guard let store else { return (signer, identity) }
        do {
            try CheckpointSigner.checkIdentity(store, identity)
            if claimsLog, kept == nil { _ = try CheckpointSigner.sign(store, signer, as: identity) }
        } catch let error as StoreError where error.code == .corrupt && keyMissing {
            // Another node claimed the log first. Unless under this very key (nodes sharing this
            // folder share it, and one may have claimed the log with it under another origin),
            // the key made here has signed nothing kept: it goes, and the node asks for the log's.
            let claimed = try? store.read { try $0.latestSignedCheckpoint() }
            if let claimed, (try? Checkpoint(note: claimed.note, verifiedBy: signer.verifier)) == nil {
                try? FileManager.default.removeItem(atPath: defaultKey)
                throw ValidationError("Another node claimed the log first, with another key (its checkpoints are not signed by \(signer.verifier.text)); give the log's key with --log-key.")
            }
            throw error
        }
        return (signer, identity)
    }
}

struct AuditCheckpoint: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Print the log's latest signed checkpoint (C2SP tlog-checkpoint, as a signed note), signing one now if the log grew.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var key: LogKeyOptions

    func run() async throws {
        // An auditor's command: it signs, but never migrates a store an older binary may still
        // serve, nor makes one in a folder that holds none.
        // As every other audit command: a folder without a store is the folder's failure (exit 1).
        if try store.database() == nil, let reason = Environment.noStore(in: store.dataDir) {
            fail(StoreError(.io, reason.isMissing ? "\(store.dataDir) holds no store" : reason.description))
        }
        try await withStore(store, migrating: false) { store in
            let (signer, identity) = try key.signer(dataDirectory: self.store.dataDir, registryId: store.settings.defaultRegistryId, store: store)
            print(try CheckpointSigner.sign(store, signer, as: identity).note, terminator: "")
        }
    }
}

struct AuditPublicKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "public-key", abstract: "Print the log's verifier key (`<name>+<id>+<key>`): what an auditor keeps to check checkpoints.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var key: LogKeyOptions

    func run() async throws {
        let settings = try store.settings()
        do {
            print(try key.signer(dataDirectory: store.dataDir, registryId: settings.defaultRegistryId, store: nil).identity.verifier.text)
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }
}

struct AuditConsistency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consistency",
        abstract: "Print the RFC 9162 consistency proof that the log's tree of --to events extends its tree of --from events.")

    @OptionGroup var store: StoreOptions
    @Option(help: "The older tree size (an auditor's saved checkpoint).") var from: UInt64
    @Option(help: "The newer tree size. [default: the latest signed checkpoint's, else the log's]") var to: UInt64?
    @Flag(help: "Print {\"consistency\": [base64 hashes]}, the shape of GET /log/proof/consistency, instead of one hash per line.")
    var json = false

    func run() async throws {
        try withReader(store) { store in
            let proof = try store.read { snapshot in
                let size = try snapshot.lastPosition(), signed = try snapshot.latestSignedCheckpoint()?.size
                // The log's own signed size past its end is no bad input of the auditor's: the log was cut.
                if to == nil, let signed, signed > size {
                    throw StoreError(.corrupt, "the log holds \(size) events but signed a checkpoint of \(signed): it was taken back after it was signed; `upload-replay` names what changed")
                }
                // The default is the auditor's to know of: a --from past it is no size they gave.
                if to == nil, let signed, from > signed {
                    throw CommandError(.invalidParameter, "--from \(from) is past the latest signed checkpoint, of \(signed) events, which --to defaults to: give --to (at most the log's size, \(size)), or wait for the next checkpoint")
                }
                return try snapshot.consistencyProof(first: from, second: to ?? signed ?? size)
            }.map { Data($0).base64EncodedString() }
            if json {
                printLine(.object([("consistency", .array(proof.map(JSONValue.string)))]))
            } else {
                proof.forEach { print($0) }
            }
        }
    }
}

struct AuditVerifyConsistency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-consistency",
        abstract: "Check offline that the --new checkpoint extends the --old one: both signatures and the proof must hold; exit 0 only then.")

    @Option(help: "The checkpoint you saved earlier (a signed note).") var old: String
    @Option(help: "The newer checkpoint (a signed note).") var new: String
    @Option(help: "The proof: {\"consistency\": [...]} as `audit consistency --json` and GET /log/proof/consistency give it.")
    var proof: String
    @Option(help: "The log's verifier key, or a file holding it (`audit public-key` prints it).") var publicKey: String

    func run() throws {
        do {
            let keyText = FileManager.default.fileExists(atPath: publicKey) ? try Self.read(publicKey) : publicKey
            let verifier = try NoteVerifier(keyText)
            let older = try Self.checkpoint(old, "--old", verifier)
            let newer = try Self.checkpoint(new, "--new", verifier)
            guard older.origin == newer.origin else { throw NoteError("the checkpoints are of two logs: '\(older.origin)' and '\(newer.origin)'") }
            // Both signed by the log's key: a log that now holds fewer events than it once signed
            // was taken back (a restore, a failover that lost commits, an edit), whatever the proof.
            guard newer.size >= older.size else {
                throw NoteError("the --new checkpoint is of \(newer.size) events, fewer than the \(older.size) the log signed in the one you saved: the log was taken back (a restore, a failover that lost commits, or an edit), unless the two were given the wrong way round")
            }
            let hashes = try Self.proofHashes(try Self.read(proof))
            guard MerkleTree.verifyConsistency(first: older.size, second: newer.size, firstRoot: older.rootHash, secondRoot: newer.rootHash, proof: hashes) else {
                throw NoteError("the proof does not show that the tree of \(newer.size) events extends the tree of \(older.size): the history was rewritten, or the proof is for other sizes")
            }
            print("OK: the log '\(newer.origin)' of \(newer.size) events extends the one of \(older.size) events you saved; both checkpoints are signed by \(verifier.name)")
        } catch {
            StandardStreams.error("FAILED: \(error)\n")
            throw ExitCode(1)
        }
    }

    static func read(_ path: String) throws -> String {
        // Read through a handle, so that a pipe (`<(curl …)`) works as well as a file.
        // `readToEnd` throws where `readDataToEndOfFile` traps (a folder, an I/O error).
        guard let handle = FileHandle(forReadingAtPath: path) else { throw NoteError("cannot read \(path)") }
        defer { try? handle.close() }
        do { return String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self) } catch { throw NoteError("cannot read \(path): \(error.localizedDescription)") }
    }

    static func checkpoint(_ path: String, _ flag: String, _ verifier: NoteVerifier) throws -> Checkpoint {
        do { return try Checkpoint(note: try read(path), verifiedBy: verifier) } catch { throw NoteError("\(flag) \(path): \(error)") }
    }

    static func proofHashes(_ text: String) throws -> [MerkleTree.Hash] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let hashes = object["consistency"] as? [String] else {
            throw NoteError("the proof must be {\"consistency\": [base64 hashes]}")
        }
        return try hashes.map { hash in
            guard let bytes = Data(base64Encoded: hash), bytes.count == MerkleTree.hashSize else { throw NoteError("a proof hash is not base64 of 32 bytes: '\(hash.prefix(60))'") }
            return Array(bytes)
        }
    }
}
