public import Crypto
import Foundation

/// Signed notes (C2SP signed-note, Go's `golang.org/x/mod/sumdb/note`) with Ed25519 keys: the
/// envelope transparency logs sign their checkpoints in, so that any verifier that speaks the
/// format (Go's, Sigsum's, witnesses') checks ours.
///
/// A note is its text (UTF-8, ending in a newline, no blank line), a blank line, and one line per
/// signature: `— <key name> <base64(4-byte key id ‖ 64-byte signature)>`. The key id is the first
/// four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); 0x01 names Ed25519.
public enum SignedNote {
    /// The note of `text` signed by `signer`.
    public static func sign(_ text: String, with signer: NoteSigner) throws(NoteError) -> String {
        guard isValidText(text) else { throw NoteError("a note's text must be UTF-8 without control characters, end in a newline and hold no blank line") }
        guard let signature = try? signer.privateKey.signature(for: Array(text.utf8)) else { throw NoteError("Ed25519 could not sign the note") }
        return text + "\n" + signatureLine(name: signer.name, keyId: signer.keyId, signature: Array(signature))
    }

    /// The text of `note`, once a signature by `verifier`'s key holds. Signatures by other keys
    /// (a witness's cosignature, say) are allowed and ignored.
    public static func open(_ note: String, verifiedBy verifier: NoteVerifier) throws(NoteError) -> String {
        let (text, signatures) = try split(note)
        let lines = signatures.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard !lines.isEmpty else { throw NoteError("the note has no signatures") }
        guard lines.count <= maxSignatures else { throw NoteError("the note has more than \(maxSignatures) signatures") }
        var verified = false
        for line in lines {
            guard line.hasPrefix("— ") else { throw NoteError("a signature line must start with an em dash and a space") }
            let fields = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 2, NoteKeys.isValidName(fields[0]),
                  let bytes = Data(base64Encoded: String(fields[1])).map(Array.init), bytes.count > 4 else {
                throw NoteError("a signature line must be `— <key name> <base64>`")
            }
            guard fields[0] == verifier.name, BigEndian32.read(bytes) == verifier.keyId else { continue }
            guard bytes.count == 68, verifier.publicKey.isValidSignature(bytes[4...], for: Array(text.utf8)) else {
                throw NoteError("the signature by \(verifier.name) does not hold")
            }
            verified = true
        }
        guard verified else { throw NoteError("the note has no signature by \(verifier.name)+\(NoteKeys.hex(verifier.keyId))") }
        return text
    }

    /// The most signature lines a note may carry, as Go's `note.Open` allows.
    static let maxSignatures = 100

    /// The text of `note`, its signatures unchecked: for notes this log kept itself.
    public static func unverifiedText(_ note: String) throws(NoteError) -> String { try split(note).text }

    /// The text (up to the last blank line) and the signature lines after it.
    private static func split(_ note: String) throws(NoteError) -> (text: String, signatures: Substring) {
        guard note.hasSuffix("\n"), let split = note.range(of: "\n\n", options: .backwards) else {
            throw NoteError("not a signed note: no blank line before signature lines, or no final newline")
        }
        let text = String(note[..<split.lowerBound]) + "\n"
        guard isValidText(text) else { throw NoteError("the note's text is malformed") }
        return (text, note[split.upperBound...])
    }

    static func signatureLine(name: String, keyId: UInt32, signature: [UInt8]) -> String {
        "— \(name) \(Data(BigEndian32.bytes(keyId) + signature).base64EncodedString())\n"
    }

    static func isValidText(_ text: String) -> Bool {
        text.hasSuffix("\n") && !text.contains("\n\n")
            && text.unicodeScalars.allSatisfy { $0 == "\n" || ($0.value >= 0x20 && $0.value != 0x7F) }
    }
}

/// An Ed25519 note signing key, and its text form `PRIVATE+KEY+<name>+<key id, hex>+<base64(0x01 ‖
/// 32-byte seed)>` (the form `note.GenerateKey` writes, so a key made by Go's tools works here).
public struct NoteSigner: Sendable {
    public let name: String
    public let keyId: UInt32
    let privateKey: Curve25519.Signing.PrivateKey

    public init(name: String, privateKey: Curve25519.Signing.PrivateKey) throws(NoteError) {
        guard NoteKeys.isValidName(name) else { throw NoteError("a key name must be non-empty, without spaces or '+'; got '\(name)'") }
        self.name = name
        self.privateKey = privateKey
        keyId = NoteKeys.keyId(name: name, publicKey: Array(privateKey.publicKey.rawRepresentation))
    }

    /// Parses the text form, checking that the key id matches the key.
    public init(_ text: String) throws(NoteError) {
        // The key's base64 may itself hold '+': it is everything after the fourth.
        let fields = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "+", maxSplits: 4, omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0] == "PRIVATE", fields[1] == "KEY", let (id, seed) = NoteKeys.keyFields(fields[3], fields[4]),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw NoteError("not a signer key: want PRIVATE+KEY+<name>+<8 hex digits>+<base64 Ed25519 key>")
        }
        try self.init(name: String(fields[2]), privateKey: key)
        guard keyId == id else { throw NoteError("the signer key's id \(NoteKeys.hex(id)) does not match its key (\(NoteKeys.hex(keyId)))") }
    }

    /// A new random key named `name`.
    public static func generate(name: String) throws(NoteError) -> NoteSigner {
        try NoteSigner(name: name, privateKey: Curve25519.Signing.PrivateKey())
    }

    /// A new random key named `prefix`, a slash, and the first 8 hex digits of SHA-256 of its
    /// public key: a name no other key's shares. A log's origin is its identity (C2SP
    /// tlog-checkpoint), so two logs made alike must not sign under one.
    public static func generate(namedAfter prefix: String) throws(NoteError) -> NoteSigner {
        let key = Curve25519.Signing.PrivateKey()
        return try NoteSigner(name: prefix + "/" + Hex.encode(Array(SHA256.hash(data: key.publicKey.rawRepresentation).prefix(4))), privateKey: key)
    }

    /// The secret text form: keep it 0600.
    public var text: String {
        "PRIVATE+KEY+\(name)+\(NoteKeys.hex(keyId))+\(Data([NoteKeys.ed25519] + privateKey.rawRepresentation).base64EncodedString())"
    }

    public var verifier: NoteVerifier { NoteVerifier(name: name, keyId: keyId, publicKey: privateKey.publicKey) }
}

/// An Ed25519 note verifier key, and its text form `<name>+<key id, hex>+<base64(0x01 ‖ 32-byte
/// public key)>`: what an auditor keeps to check checkpoints.
public struct NoteVerifier: Sendable, Equatable {
    public let name: String
    public let keyId: UInt32
    let publicKey: Curve25519.Signing.PublicKey

    init(name: String, keyId: UInt32, publicKey: Curve25519.Signing.PublicKey) {
        self.name = name
        self.keyId = keyId
        self.publicKey = publicKey
    }

    /// Parses the text form, checking that the key id matches the name and key.
    public init(_ text: String) throws(NoteError) {
        let fields = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, NoteKeys.isValidName(fields[0]), let (id, raw) = NoteKeys.keyFields(fields[1], fields[2]),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw NoteError("not a verifier key: want <name>+<8 hex digits>+<base64 Ed25519 key>")
        }
        guard NoteKeys.keyId(name: String(fields[0]), publicKey: raw) == id else {
            throw NoteError("the verifier key's id \(NoteKeys.hex(id)) does not match its name and key")
        }
        self.init(name: String(fields[0]), keyId: id, publicKey: key)
    }

    public var text: String { "\(name)+\(NoteKeys.hex(keyId))+\(Data([NoteKeys.ed25519] + publicKey.rawRepresentation).base64EncodedString())" }

    public static func == (a: NoteVerifier, b: NoteVerifier) -> Bool { a.text == b.text }
}

/// A malformed note or key, or a signature that does not hold.
public struct NoteError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What signer and verifier keys share: names, key ids and the key fields of their text forms.
enum NoteKeys {
    /// Ed25519's algorithm byte in key ids and encoded keys.
    static let ed25519: UInt8 = 0x01

    static func isValidName(_ name: some StringProtocol) -> Bool {
        // No control character (DEL too): a name is a checkpoint's origin line, which the note's
        // text check refuses them in.
        !name.isEmpty && !name.contains("+") && !name.unicodeScalars.contains { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }
    }

    static func keyId(name: String, publicKey: [UInt8]) -> UInt32 {
        BigEndian32.read(Array(SHA256.hash(data: Array(name.utf8) + [0x0A, ed25519] + publicKey)))
    }

    /// The key id (8 hex digits) and the 32 key bytes after the algorithm byte (base64).
    static func keyFields(_ hexId: Substring, _ base64Key: Substring) -> (UInt32, [UInt8])? {
        guard hexId.count == 8, let id = UInt32(hexId, radix: 16),
              let bytes = Data(base64Encoded: String(base64Key)).map(Array.init), bytes.count == 33, bytes[0] == ed25519 else { return nil }
        return (id, Array(bytes[1...]))
    }

    static func hex(_ id: UInt32) -> String {
        let digits = String(id, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

enum BigEndian32 {
    static func read(_ bytes: some Collection<UInt8>) -> UInt32 { bytes.prefix(4).reduce(0) { $0 << 8 | UInt32($1) } }
    static func bytes(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
}
