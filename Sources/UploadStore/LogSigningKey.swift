import Foundation
public import LogHashing

/// The log's Ed25519 signing key, in the signed-note signer form (``NoteSigner``), so that a key
/// made with Go's `note.GenerateKey` works as well as one this server made.
public enum LogSigningKey {
    /// Where the key lives unless `--log-key` names another file.
    public static let defaultFileName = "transparency-log.key"
    public static func defaultPath(dataDirectory: String) -> String { dataDirectory + "/" + defaultFileName }

    /// The key in `path`, or, with no `path`, the data directory's, made by `newKey` on first use
    /// (0600, created exclusively). A key given by path must exist.
    public static func load(path: String?, dataDirectory: String, newKey: () throws -> NoteSigner) throws -> NoteSigner {
        let file = path ?? defaultPath(dataDirectory: dataDirectory)
        if path != nil, !FileManager.default.fileExists(atPath: file) {
            throw StoreError(.io, "the log key \(file) does not exist")
        }
        return try signer(in: file, SecretFile.contents(at: file) { Array((try newKey().text + "\n").utf8) })
    }

    /// The verifier of the key the log signs with, when that key is in `path` or in the data
    /// directory; `nil` when there is none (nothing was ever signed there).
    public static func verifier(path: String?, dataDirectory: String) throws -> NoteVerifier? {
        let file = path ?? defaultPath(dataDirectory: dataDirectory)
        guard path != nil || FileManager.default.fileExists(atPath: file) else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else { throw StoreError(.io, "cannot read the log key \(file)") }
        return try signer(in: file, data).verifier
    }

    private static func signer(in file: String, _ data: Data) throws -> NoteSigner {
        do {
            return try NoteSigner(String(decoding: data, as: UTF8.self))
        } catch {
            throw StoreError(.io, "the log key \(file) is not a note signer key: \(error)")
        }
    }
}
