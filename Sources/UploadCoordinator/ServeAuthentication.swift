import ArgumentParser
import Foundation
import LogHashing
import UploadAPI
import UploadCore
import UploadService
import UploadStore

/// Where `serve` gets its access keys, so that it never runs open by accident:
/// `--credentials FILE`, else `UPLOAD_COORDINATOR_CREDENTIALS` (a file), else the pair
/// `UPLOAD_COORDINATOR_ACCESS_KEY_ID` / `UPLOAD_COORDINATOR_SECRET_ACCESS_KEY`, else a key pair
/// generated once into `DATA/credentials` (mode 0600) and printed. Anonymous access needs
/// `--allow-anonymous` and a loopback address.
enum ServeAuthentication {
    /// Where the keys come from: decided, and a credentials file read, before the store opens,
    /// so that a refused flag makes no store in a folder named by mistake.
    enum Keys {
        case anonymous
        /// Keys from `source`: a file (`isFile`), or the environment's variables.
        case given([AccessKey], source: String, isFile: Bool)
        /// A key pair generated once into `DATA/credentials`.
        case generated
    }

    static func keys(credentialsFile: String?, allowAnonymous: Bool, host: String) throws -> Keys {
        if allowAnonymous {
            guard Loopback.isLoopback(host) else {
                throw ValidationError("--allow-anonymous is allowed only on a loopback address (127.0.0.1, ::1, localhost), not \(host)")
            }
            return .anonymous
        }
        let env = ProcessInfo.processInfo.environment
        if let path = credentialsFile ?? env["UPLOAD_COORDINATOR_CREDENTIALS"] {
            let flag = credentialsFile != nil ? "--credentials" : "UPLOAD_COORDINATOR_CREDENTIALS"
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw ValidationError("\(flag) \(path) cannot be read: \(String(cString: strerror(errno)))") }
            let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            let text: String
            do { text = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self) } catch {
                throw ValidationError("\(flag) \(path) cannot be read: \(String(cString: strerror(errno)))")
            }
            let keys: [AccessKey]
            do { keys = try AccessKey.parse(text) } catch let failure as ValidationFailure { throw ValidationError("\(flag) \(path): \(failure)") }
            guard !keys.isEmpty else { throw ValidationError("no access keys in \(path)") }
            return .given(keys, source: path, isFile: true)
        }
        let (idVariable, secretVariable) = ("UPLOAD_COORDINATOR_ACCESS_KEY_ID", "UPLOAD_COORDINATOR_SECRET_ACCESS_KEY")
        // One without the other is a mistake, not a wish for a generated key the user never sees.
        if (env[idVariable] == nil) != (env[secretVariable] == nil) {
            let (set, unset) = env[idVariable] != nil ? (idVariable, secretVariable) : (secretVariable, idVariable)
            throw ValidationError("\(set) is set without \(unset): set both, or neither")
        }
        if let id = env[idVariable], let secret = env[secretVariable] {
            // An unset variable often arrives empty (compose, systemd): an empty secret would let
            // anyone who knows the key id (the log records it) sign.
            guard !id.isEmpty, !secret.isEmpty else {
                throw ValidationError("UPLOAD_COORDINATOR_ACCESS_KEY_ID and UPLOAD_COORDINATOR_SECRET_ACCESS_KEY must not be empty")
            }
            if let problem = AccessKey.problem(ofKeyId: id) { throw ValidationError("UPLOAD_COORDINATOR_ACCESS_KEY_ID: \(problem)") }
            return .given([AccessKey(accessKeyId: id, secretAccessKey: secret)], source: "UPLOAD_COORDINATOR_ACCESS_KEY_ID", isFile: false)
        }
        return .generated
    }

    /// The authentication of `keys`, once the store is open (its clock judges signatures' times),
    /// the line `serve` prints of it, and what it should warn of (a secrets file others may read,
    /// a secret short enough to guess).
    static func resolve(
        _ keys: Keys, dataDir: String, clock: any UploadCore.Clock, registryId: String, region: String?
    ) throws -> (ECRPublicService.Authentication, announcement: String, warnings: [String]) {
        switch keys {
        case .anonymous:
            return (.anonymous, "authentication: none (--allow-anonymous, loopback only); any credentials are accepted", [])
        case .given(let keys, let source, let isFile):
            return (.sigV4(SigV4Verifier(keys: keys, clock: clock, servedRegistryId: registryId, region: region)),
                    "authentication: SigV4 with \(keys.count) key(s) from \(source) for \(region.map { "region \($0)" } ?? "any region")",
                    warnings(keys, file: isFile ? source : nil))
        case .generated:
            let path = dataDir + "/" + DataFolder.generatedCredentials
            let keys = try AccessKey.parse(String(decoding: try SecretFile.contents(at: path, creatingWith: generatedKeyPair), as: UTF8.self))
            guard let key = keys.first else { throw ValidationError("no access keys in \(path)") }
            let verifier = SigV4Verifier(keys: keys, clock: clock, servedRegistryId: registryId, region: region)
            return (.sigV4(verifier), """
                authentication: SigV4 with the key pair in \(path) (mode \(permissions(of: path).map { String($0, radix: 8) } ?? "unknown")). Use it with awscli:
                  export AWS_ACCESS_KEY_ID=\(key.accessKeyId) AWS_SECRET_ACCESS_KEY=$(awk '{print $2}' \(shellQuoted(path))) AWS_DEFAULT_REGION=\(region ?? SigV4Verifier.defaultRegion)
                """, warnings(keys, file: path))
        }
    }

    /// The shortest secret not warned of: the generated ones have 64 characters, AWS's 40.
    static let shortestSecret = 16

    /// Warnings of what weakens `keys`: their `file` readable by other users, a secret shorter
    /// than ``shortestSecret`` (the sign-in page and the token endpoint take guesses as fast as
    /// they come).
    static func warnings(_ keys: [AccessKey], file: String?) -> [String] {
        var warnings: [String] = []
        if let file, let mode = permissions(of: file), mode & 0o077 != 0 {
            warnings.append("\(file) may be read by other users (mode \(String(mode, radix: 8))), and its secrets sign requests: chmod 600 it")
        }
        for key in keys where key.secretAccessKey.count < shortestSecret {
            warnings.append("the secret of access key \(key.accessKeyId) has \(key.secretAccessKey.count) characters: one that short can be guessed; give it \(shortestSecret) or more")
        }
        return warnings
    }

    /// `path` as a shell reads it back: as it is when it holds only characters no shell treats
    /// apart, else in single quotes (a folder with a space made the printed line set an empty secret).
    static func shellQuoted(_ path: String) -> String {
        let plain = path.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/._-+,:@%".unicodeScalars.contains($0)) }
        return plain && !path.isEmpty ? path : "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// A file's permission bits; `nil` when it cannot be looked at.
    static func permissions(of path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
    }

    /// A random key pair, as the credentials file's one line. ``SecretFile`` writes it whole or not
    /// at all, 0600, and processes starting together on one folder agree on one pair.
    /// From the kernel's random bits (``BufferedRandom``, `getentropy`): Foundation's `UUID()`
    /// reads /dev/urandom through a descriptor, and a start out of descriptors made the same
    /// all-zero pair every time.
    private static func generatedKeyPair() -> [UInt8] {
        var random = BufferedRandom()
        func hex(words: Int) -> String { (0..<words).map { _ in Hex.encode(BigEndian.bytes(random.next() as UInt64)) }.joined().uppercased() }
        return Array("AKUC\(hex(words: 1)) \(hex(words: 4))\n".utf8)
    }
}
