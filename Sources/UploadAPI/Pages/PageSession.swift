import Crypto
import Foundation
import LogHashing
import UploadCore

/// The pages' sign-in: an access key and its secret, entered once on the sign-in page, become a
/// cookie the server signs (HMAC-SHA256 under a key derived from the registry token key in the
/// data folder), `HttpOnly` and `SameSite=Strict`, that names the access key and expires after
/// ``lifetimeMilliseconds``. Nothing is stored on the server: the cookie is checked on each
/// request, in constant time, and a key no longer configured revokes every cookie naming it.
struct PageSession: Sendable {
    static let cookieName = "uc_session"
    static let lifetimeMilliseconds: Int64 = 8 * 3_600_000
    private static let version = "v1"

    private let key: SymmetricKey
    private let clock: any UploadCore.Clock
    /// Each configured key's secret, by access key id; empty when the server takes no keys.
    private let secrets: [String: String]

    init(registryTokenKey: SymmetricKey, clock: any UploadCore.Clock, authentication: ECRPublicService.Authentication) {
        // A key of its own, so that a cookie can never pass as a registry token or password.
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: registryTokenKey, info: Array("upload-coordinator pages session v1".utf8), outputByteCount: 32)
        self.clock = clock
        if case .sigV4(let verifier) = authentication {
            secrets = verifier.keys.mapValues(\.secretAccessKey)
        } else {
            secrets = [:]
        }
    }

    /// Whether any key can sign in (not under `--allow-anonymous`, which configures none).
    var acceptsKeys: Bool { !secrets.isEmpty }

    /// The access key id, when `secret` is its secret (compared in constant time).
    func signIn(accessKeyId: String, secret: String) -> String? {
        let expected = secrets[accessKeyId] ?? ""
        // Digests of equal length compare in constant time; an unknown key costs the same.
        let matches = SHA256.hash(data: Array(secret.utf8)) == SHA256.hash(data: Array(expected.utf8))
        return matches && secrets[accessKeyId] != nil ? accessKeyId : nil
    }

    /// The cookie's value for `accessKeyId`, and when it expires.
    func cookieValue(for accessKeyId: String) -> String {
        let expires = clock.now().millisecondsSinceEpoch + Self.lifetimeMilliseconds
        let body = "\(Self.version).\(Hex.encode(Array(accessKeyId.utf8))).\(expires)"
        return body + "." + signature(body)
    }

    /// The `Set-Cookie` header that signs `accessKeyId` in.
    func setCookie(for accessKeyId: String) -> String {
        "\(Self.cookieName)=\(cookieValue(for: accessKeyId)); Path=/; Max-Age=\(Self.lifetimeMilliseconds / 1000); HttpOnly; SameSite=Strict"
    }

    /// The `Set-Cookie` header that signs out.
    static let clearCookie = "\(cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"

    /// The access key a `Cookie` header's session names, when it is this server's, unexpired, and
    /// the key is still configured.
    func accessKeyId(fromCookieHeader header: String?) -> String? {
        guard let header else { return nil }
        for pair in header.split(separator: ";") {
            let trimmed = pair.drop { $0 == " " }
            guard trimmed.hasPrefix(Self.cookieName + "=") else { continue }
            if let accessKeyId = accessKeyId(fromCookie: String(trimmed.dropFirst(Self.cookieName.count + 1))) { return accessKeyId }
        }
        return nil
    }

    func accessKeyId(fromCookie value: String) -> String? {
        let fields = value.split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0] == Self.version, let expires = Int64(fields[2]),
              let signature = Hex.decode(String(fields[3])), signature.count == 32,
              HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: Array(fields[0..<3].joined(separator: ".").utf8), using: key),
              expires > clock.now().millisecondsSinceEpoch,
              let bytes = Hex.decode(String(fields[1])), let accessKeyId = String(validating: bytes, as: UTF8.self),
              secrets[accessKeyId] != nil else { return nil }
        return accessKeyId
    }

    private func signature(_ body: String) -> String {
        Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: key)))
    }
}
