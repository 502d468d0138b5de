import Crypto
import Foundation
import HTTPTypes
import LogHashing
import UploadCore
import UploadStore

/// Who may do what on the registry front end, the way ECR Public and the distribution token flow
/// decide it:
/// - **Passwords.** GetAuthorizationToken hands its caller a password (`AWS:<password>` in
///   base64), which `docker login -u AWS` and `skopeo login` present as Basic credentials. It names
///   the access key that asked for it and the registry, expires after 12 hours, and is an HMAC under
///   a key kept in the data folder, so the server checks it without storing it. A password whose
///   access key is no longer configured is revoked.
/// - **Bearer tokens.** `/token` trades credentials (or none, for pulls) for a short-lived token
///   naming the repositories asked for (every action there for credentials, pulls for anyone:
///   ``grant(_:to:)``): the registry endpoints' usual proof.
///
/// Every comparison of a signature is in constant time.
public struct RegistryAuthority: Sendable {
    /// How long a password from GetAuthorizationToken is good for (ECR's 12 hours).
    public static let passwordLifetimeMilliseconds: Int64 = 12 * 3_600_000
    /// How long a bearer token from `/token` is good for.
    public static let tokenLifetimeSeconds: Int64 = 300

    let key: SymmetricKey
    let clock: any UploadCore.Clock
    let registryId: String
    /// The access keys passwords may name; `nil` when anyone is let in (`--allow-anonymous`).
    let accessKeys: Set<String>?
    /// Whether pulls need credentials too (`--private-pulls`).
    public let privatePulls: Bool
    /// What anyone may do on a repository unless its policy denies it: pull, unless `--private-pulls`.
    var publicActions: Set<String> { privatePulls ? [] : AccessPolicy.pullActions }
    /// What the gallery shows anyone of a repository unless its policy denies it (nothing, under `--private-pulls`).
    var galleryPublicActions: Set<String> { privatePulls ? [] : AccessPolicy.galleryReadActions }
    /// What each caller may do once known: the AWS API and the registry front end judge by it alike.
    public let access: AccessPolicy

    /// Each configured key's secret, by access key id (none under `--allow-anonymous`): a password
    /// and a token are signed over a digest of their key's secret, so giving the key a new secret
    /// revokes them, as removing the key does.
    let secrets: [String: String]

    public var opensEverything: Bool { accessKeys == nil }

    public init(
        key: SymmetricKey, clock: any UploadCore.Clock, registryId: String, accessKeys: Set<String>?, privatePulls: Bool = false,
        access: AccessPolicy? = nil, secrets: [String: String] = [:]
    ) {
        // Without one, every key given is a user of this registry named by its id.
        self.access = access ?? AccessPolicy(
            principals: Dictionary(uniqueKeysWithValues: (accessKeys ?? []).map { ($0, PolicyPrincipal(registryId: registryId, name: $0)) }),
            registryId: registryId, opensEverything: accessKeys == nil)
        // Under --allow-anonymous, a key of its own: a token or password minted while anyone could
        // have one is nothing once the server is restarted to require keys.
        self.key = accessKeys != nil ? key : HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key, info: Array("upload-coordinator registry, anonymous access".utf8), outputByteCount: 32)
        self.clock = clock
        self.registryId = registryId
        self.accessKeys = accessKeys
        self.privatePulls = privatePulls
        self.secrets = secrets
    }

    /// The authority for an API authenticated as `authentication`: the configured access keys may
    /// hold passwords; when it is anonymous, anyone may do anything. (A key of another registry
    /// holds one too: what it may do with it is its policies' to say, ``AccessPolicy``.)
    public init(
        authentication: ECRPublicService.Authentication, key: SymmetricKey, clock: any UploadCore.Clock, registryId: String, privatePulls: Bool = false
    ) {
        let secrets: [String: String]? = switch authentication {
        case .anonymous: nil
        case .sigV4(let verifier): verifier.keys.mapValues(\.secretAccessKey)
        }
        self.init(
            key: key, clock: clock, registryId: registryId, accessKeys: secrets.map { Set($0.keys) }, privatePulls: privatePulls,
            access: AccessPolicy(authentication: authentication, registryId: registryId), secrets: secrets ?? [:])
    }

    /// The signing key in `path`: 32 random bytes, created on first use (``SecretFile``).
    public static func loadKey(at path: String) throws -> SymmetricKey {
        let data = try SecretFile.contents(at: path) { SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) } }
        guard data.count == 32 else {
            throw ValidationFailure("cannot read the registry token key \(path): it must hold 32 bytes (delete it to make a new one, which revokes every password)")
        }
        return SymmetricKey(data: data)
    }

    // MARK: Passwords

    /// A password for `principal`, and when it expires.
    public func password(for principal: String) -> (password: String, expiresAt: Timestamp) {
        let expires = clock.now().millisecondsSinceEpoch + Self.passwordLifetimeMilliseconds
        let body = "\(Self.passwordPrefix).\(Self.base64URL(Array(principal.utf8))).\(registryId).\(expires)"
        return (body + "." + signature(of: body + secretBinding(principal)), Timestamp(millisecondsSinceEpoch: expires))
    }

    /// What a password's or a token's signature covers beyond its text: a digest of its key's
    /// secret, when the server knows it.
    private func secretBinding(_ principal: String) -> String {
        // Hashed for a name that is no key too, so that the time taken tells nothing of which are.
        let secret = secrets[principal]
        let digest = Hex.encode(SHA256.hash(data: Array((secret ?? "").utf8)))
        return secret == nil ? "" : "\n" + digest
    }

    /// The principal a password names, when it is this server's, unexpired, for this registry, and
    /// its access key is still configured.
    func principal(ofPassword password: String) -> String? { try? checkPassword(password).get() }

    /// The principal a password names, or why it is refused.
    func checkPassword(_ password: String) -> Result<String, PasswordRefusal> {
        let fields = password.split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0] == Self.passwordPrefix, let expires = Int64(fields[3]),
              let principalBytes = Self.decodeBase64URL(fields[1]), let principal = String(validating: principalBytes, as: UTF8.self) else {
            return .failure(.notAPassword)
        }
        guard fields[2] == registryId else { return .failure(.otherRegistry) }
        // Signed over its key's secret: a key given a new secret, or removed, fails here.
        guard verify(String(password.dropLast(fields[4].count + 1)) + secretBinding(principal), signature: fields[4]) else { return .failure(.notSigned) }
        guard expires > clock.now().millisecondsSinceEpoch else { return .failure(.expired) }
        if let accessKeys, !accessKeys.contains(principal) { return .failure(.notSigned) }
        return .success(principal)
    }

    /// Why a registry password is refused, as its client is told: the password names its own key
    /// and registry, so saying which check failed tells a stranger nothing. Told as one reason, a
    /// password refused for its key's new secret read as one that had expired.
    enum PasswordRefusal: Error {
        case notAPassword, otherRegistry, notSigned, expired

        var message: String {
            switch self {
            case .notAPassword: "The credentials are not valid: the user must be AWS and the password one GetAuthorizationToken gave"
            case .otherRegistry: "The password was given for another registry: get one from this registry's GetAuthorizationToken"
            case .notSigned: "The password's signature does not hold: this server did not give it, or its access key has since been given a new secret or removed; get a new password with GetAuthorizationToken"
            case .expired: "The password has expired (GetAuthorizationToken's passwords last 12 hours): get a new one"
            }
        }
    }

    // MARK: Bearer tokens

    /// A token granting `grants` to `principal` (`nil`: anonymous), signed over its key's secret as
    /// a password is (a key given a new secret, after a leak, loses the tokens minted with the old),
    /// and over this registry's id, which a password names: a token is no pass to another registry
    /// served with the same signing key.
    func bearerToken(principal: String?, grants: [Grant]) -> String {
        let expires = clock.now().millisecondsSinceEpoch + Self.tokenLifetimeSeconds * 1000
        let claims = ([principal ?? "", String(expires)] + grants.map(\.scope)).joined(separator: "\n")
        let body = "\(Self.tokenPrefix).\(Self.base64URL(Array(claims.utf8)))"
        return body + "." + signature(of: tokenSigned(body, principal: principal ?? ""))
    }

    /// What a token's signature covers: its text, its key's secret and this registry.
    private func tokenSigned(_ body: String, principal: String) -> String {
        body + secretBinding(principal) + "\u{0}registry:" + registryId
    }

    /// What a token grants, when it is this server's, unexpired, and signed over its key's current
    /// secret. Each grant is one line, and ``Grant/init(scope:)`` admits no line break, so a claim
    /// cannot be split into two.
    func claims(ofBearer token: String) -> (principal: String?, grants: [Grant])? {
        let fields = token.split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 3, fields[0] == Self.tokenPrefix,
              let bytes = Self.decodeBase64URL(fields[1]), let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 2, verify(tokenSigned("\(fields[0]).\(fields[1])", principal: lines[0]), signature: fields[2]),
              let expires = Int64(lines[1]), expires > clock.now().millisecondsSinceEpoch else { return nil }
        return (lines[0].isEmpty ? nil : lines[0], lines.dropFirst(2).compactMap(Grant.init(scope:)))
    }

    /// One repository's actions, as a token scope spells them: `repository:<name>:pull,push`.
    struct Grant: Equatable {
        var repository: String
        var actions: [String]

        init(repository: String, actions: [String]) {
            self.repository = repository
            self.actions = actions
        }

        /// Parses `repository:<name>:<action>[,<action>…]`, where the name is a repository name and
        /// each action one of ``knownActions``; anything else (another resource type, a name that
        /// is not one, control characters) is not granted. So a grant's ``scope`` is always one
        /// line that reads back as itself.
        init?(scope: String) {
            let prefix = "repository:"
            guard scope.hasPrefix(prefix), let colon = scope.lastIndex(of: ":") else { return nil }
            let nameStart = scope.index(scope.startIndex, offsetBy: prefix.count)
            guard colon > nameStart, let name = try? Validation.repositoryName(String(scope[nameStart..<colon])) else { return nil }
            let actions = scope[scope.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !actions.isEmpty, actions.allSatisfy(Self.knownActions.contains) else { return nil }
            repository = name
            self.actions = actions
        }

        static let knownActions: Set<String> = ["pull", "push", "delete", "*"]

        var scope: String { "repository:\(repository):\(actions.joined(separator: ","))" }

        func allows(_ action: RegistryAction, on name: String) -> Bool {
            repository == name && (actions.contains("*") || actions.contains(action.rawValue))
        }
    }

    /// What `principal` may have of what it asked. With credentials (or when anyone is let in),
    /// every action on each repository it names, whichever it asked for: each is still judged by
    /// the repository's policy where it is used, and the token stands for its caller as ECR
    /// Public's does. A client that asks for the scope of its first challenge only, and keeps that
    /// token (oras-py: a pull's, from the `HEAD` that looks for a blob), then pushes with it.
    /// Anonymously, pulls only (nothing under `--private-pulls`).
    func grant(_ requested: [Grant], to principal: String?) -> [Grant] {
        requested.compactMap { grant in
            if principal != nil || opensEverything { return Grant(repository: grant.repository, actions: RegistryAction.allCases.map(\.rawValue)) }
            return grant.actions.contains(where: { $0 == "*" || $0 == RegistryAction.pull.rawValue }) && !privatePulls
                ? Grant(repository: grant.repository, actions: [RegistryAction.pull.rawValue]) : nil
        }
    }

    // MARK: Signing

    private static let passwordPrefix = "ucp1"
    private static let tokenPrefix = "uct1"

    private func signature(of body: String) -> String {
        Self.base64URL(Array(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: key)))
    }

    /// Constant time: HMAC's own comparison.
    private func verify(_ body: String, signature: Substring) -> Bool {
        guard let mac = Self.decodeBase64URL(signature) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(body.utf8), using: key)
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64URL(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64).map(Array.init)
    }
}

/// The actions of the distribution token flow's repository scopes.
enum RegistryAction: String, CaseIterable {
    case pull, push, delete
}
