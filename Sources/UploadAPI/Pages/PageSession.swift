import Crypto
import Foundation
import LogHashing
import Logging
import UploadCore

/// The pages' secrets: sign-in sessions, and the sealed cursors of the gallery's pages.
///
/// **Sessions.** An access key and its secret, entered once on the sign-in page, become a cookie
/// the server signs (HMAC-SHA256 under a key derived from the registry token key in the data
/// folder), `HttpOnly`, `SameSite=Strict` (and `Secure` behind an `https` public URL), that names
/// the access key and expires after ``lifetimeMilliseconds``. Nothing is stored on the server: the
/// cookie is checked on each request, in constant time. The signature also covers a digest of the
/// key's secret, so removing the key from the credentials, or giving it a new secret, revokes
/// every cookie made with the old one. Signing out ends every session of the key made before it
/// (``PageSignOuts``), a copy of the cookie included.
///
/// The cookie's name is the data folder's own (``cookieName``): browsers keep cookies by host,
/// not by port, so two servers on one host would otherwise sign each other's viewers out.
///
/// **Cursors.** A gallery page's "next" link carries the last repository it looked at, which may
/// be one the viewer may not see; it is sealed (ChaCha20-Poly1305), so the link shows no name.
struct PageSession: Sendable {
    static let lifetimeMilliseconds: Int64 = 8 * 3_600_000
    private static let version = "v1"

    /// A signed-in viewer.
    struct Viewer: Sendable {
        let accessKeyId: String
        let expiresAt: Timestamp
        /// When the session was made (its expiry less ``lifetimeMilliseconds``), in milliseconds.
        var madeAt: Int64 { expiresAt.millisecondsSinceEpoch - PageSession.lifetimeMilliseconds }
    }

    /// `uc_session_` and 8 hex digits derived from the signing key: the nodes of one deployment
    /// share it, another data folder's server on the same host has its own. Behind `https`, with
    /// the `__Host-` prefix, which browsers keep from being set by another host or for a path.
    let cookieName: String
    private let signingKey: SymmetricKey
    private let sealingKey: SymmetricKey
    private let clock: any UploadCore.Clock
    /// Each configured key's secret, by access key id; empty when the server takes no keys.
    private let secrets: [String: String]
    /// Whether cookies are marked `Secure`: the pages are reached over `https`.
    private let secure: Bool
    private let signOuts: PageSignOuts

    init(
        registryTokenKey: SymmetricKey, clock: any UploadCore.Clock, authentication: ECRPublicService.Authentication, secure: Bool = false,
        signOuts: PageSignOuts = PageSignOuts(folder: nil, logger: Logger(label: "pages"))
    ) {
        // Keys of their own, so that a cookie can never pass as a registry token or password.
        signingKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: registryTokenKey, info: Array("upload-coordinator pages session v1".utf8), outputByteCount: 32)
        sealingKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: registryTokenKey, info: Array("upload-coordinator pages cursor v1".utf8), outputByteCount: 32)
        self.clock = clock
        self.secure = secure
        self.signOuts = signOuts
        let tag = HMAC<SHA256>.authenticationCode(for: Array("cookie name".utf8), using: signingKey)
        cookieName = (secure ? "__Host-" : "") + "uc_session_" + Hex.encode(Array(tag.prefix(4)))
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

    /// How a refused sign-in's access key id is logged: as given when it is a key of this server
    /// (a wrong secret for it), and not at all otherwise, since what was typed there may be a
    /// secret typed into the wrong field (as AWS hides an unknown user name on a failed console
    /// sign-in).
    func loggedAccessKeyId(_ accessKeyId: String) -> String {
        secrets[accessKeyId] != nil ? accessKeyId : "(not a key of this server)"
    }

    /// Whether a session of `accessKeyId` would be taken: not while the record of sign-outs cannot
    /// be read (``PageSignOuts/lastSignOut(_:)``), so that a sign-in is refused saying why rather
    /// than given a cookie its next page refuses.
    func sessionsCanBeMade(for accessKeyId: String) -> Bool { signOuts.lastSignOut(accessKeyId) != .max }

    /// The cookie's value for `accessKeyId`: made after the key's last sign-out, even one a node
    /// whose clock runs ahead recorded.
    func cookieValue(for accessKeyId: String) -> String {
        // A sign-out is at most ``PageSignOuts/latestTime`` (`.max`: the record cannot be read, and
        // the cookie will be refused), so the sum cannot overflow; one at it is taken as now, so
        // that no session is made past what the record can hold.
        let now = clock.now().millisecondsSinceEpoch, signedOut = signOuts.lastSignOut(accessKeyId) ?? 0
        let expires = (signedOut < now || signedOut >= PageSignOuts.latestTime ? now : signedOut + 1) + Self.lifetimeMilliseconds
        let body = "\(Self.version).\(Hex.encode(Array(accessKeyId.utf8))).\(expires)"
        return body + "." + Hex.encode(signature(body, secret: secrets[accessKeyId] ?? ""))
    }

    /// The `Set-Cookie` header that signs `accessKeyId` in.
    func setCookie(for accessKeyId: String) -> String {
        "\(cookieName)=\(cookieValue(for: accessKeyId)); Path=/; Max-Age=\(Self.lifetimeMilliseconds / 1000); HttpOnly; SameSite=Strict"
            + (secure ? "; Secure" : "")
    }

    /// The `Set-Cookie` header that signs out.
    var clearCookie: String { "\(cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "") }

    /// The viewer a `Cookie` header's session names, when it is this server's, unexpired, its key
    /// is still configured with the same secret, and it has not signed out since.
    func viewer(fromCookieHeader header: String?) -> Viewer? {
        sessionCookies(header).lazy.compactMap(viewer(fromCookie:)).first
    }

    /// The session a sign-out with this `Cookie` header ends: the first of this server's cookies
    /// in it (unexpired, its key configured with the same secret) that the record of sign-outs
    /// does not already end (``wasSignedOut(_:)``); `nil` when there is none, and the cookies are
    /// only cleared. Every cookie is looked at: one signed out before, sent first (a copy planted
    /// with a longer `Path` over http), must not spare the session sent after it.
    func sessionToSignOut(fromCookieHeader header: String?) -> Viewer? {
        sessionCookies(header).lazy.compactMap(signed).first { !wasSignedOut($0) }
    }

    /// The values of the header's cookies of this server's name, in order.
    private func sessionCookies(_ header: String?) -> [String] {
        (header ?? "").split(separator: ";").compactMap { pair in
            let trimmed = pair.drop { $0 == " " }
            return trimmed.hasPrefix(cookieName + "=") ? String(trimmed.dropFirst(cookieName.count + 1)) : nil
        }
    }

    func viewer(fromCookie value: String) -> Viewer? {
        signed(value).flatMap { isCurrent($0) ? $0 : nil }
    }

    /// The viewer a cookie names when this server signed it for a key it still has, unexpired.
    private func signed(_ value: String) -> Viewer? {
        let fields = value.split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0] == Self.version, let expires = Int64(fields[2]),
              let signature = Hex.decode(String(fields[3])), signature.count == 32,
              let bytes = Hex.decode(String(fields[1])), let accessKeyId = String(validating: bytes, as: UTF8.self) else { return nil }
        // The MAC is computed for an unknown key too, so that the time taken tells nothing of which keys exist.
        let secret = secrets[accessKeyId]
        let valid = HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed(fields[0..<3].joined(separator: "."), secret: secret ?? ""), using: signingKey)
        guard valid, secret != nil, expires > clock.now().millisecondsSinceEpoch else { return nil }
        return Viewer(accessKeyId: accessKeyId, expiresAt: Timestamp(millisecondsSinceEpoch: expires))
    }

    /// Whether `viewer`'s session still holds: unexpired, and made after its key last signed out.
    /// A live stream asks again as it goes.
    func isCurrent(_ viewer: Viewer) -> Bool {
        guard viewer.expiresAt.millisecondsSinceEpoch > clock.now().millisecondsSinceEpoch else { return false }
        return signOuts.lastSignOut(viewer.accessKeyId).map { viewer.madeAt > $0 } ?? true
    }

    /// Whether `viewer`'s session was ended by a sign-out the record holds, read as it stands: a
    /// record that cannot be read says no, so that the sign-out is tried (and refused) rather
    /// than skipped.
    private func wasSignedOut(_ viewer: Viewer) -> Bool {
        guard let last = signOuts.lastSignOut(viewer.accessKeyId), last != .max else { return false }
        return viewer.madeAt <= last
    }

    /// Ends every session of `viewer`'s key made until now, on every node, synced before it
    /// returns: its own too, when it was made later than this clock says (a node whose clock runs
    /// ahead made it, or it was made just after a sign-out recorded so). Blocks on a file's lock
    /// and syncs: call it off the event loops.
    func signOut(_ viewer: Viewer) throws {
        let now = clock.now().millisecondsSinceEpoch
        try signOuts.record(viewer.accessKeyId, at: max(now, viewer.madeAt), now: now)
    }

    /// What a cookie's signature covers: its text, and a digest of the key's secret.
    private func signed(_ body: String, secret: String) -> [UInt8] {
        Array(body.utf8) + [0x0A] + Array(SHA256.hash(data: Array(secret.utf8)))
    }

    private func signature(_ body: String, secret: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: signed(body, secret: secret), using: signingKey))
    }

    // MARK: Cursors

    /// `text` sealed: base64url, opaque, and only this server can open it.
    func sealed(_ text: String) -> String {
        // Sealing with a fresh nonce cannot fail for a valid key.
        let box = try! ChaChaPoly.seal(Array(text.utf8), using: sealingKey)
        return Data(box.combined).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    /// The text a ``sealed(_:)`` token holds; `nil` for anything else.
    func opened(_ token: String) -> String? {
        guard token.count <= 2048,
              let data = Data(base64Encoded: token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")),
              let box = try? ChaChaPoly.SealedBox(combined: data),
              let text = try? ChaChaPoly.open(box, using: sealingKey) else { return nil }
        return String(validating: Array(text), as: UTF8.self)
    }
}
