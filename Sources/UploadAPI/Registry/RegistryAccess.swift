import Foundation
import Hummingbird
import HTTPTypes
import UploadCore
import UploadService
import UploadStore

/// Authentication on the registry endpoints and the token endpoint (see ``RegistryAuthority``).
extension RegistryFrontEnd {
    /// The principal of a call allowed `access` (`nil` access: the ping, which any valid
    /// credentials pass), or `nil` when it is anonymous and allowed; `UNAUTHORIZED` with a Bearer
    /// challenge otherwise. Runs before anything else about the request is looked at.
    ///
    /// A call without credentials is challenged even for a public pull, as ECR Public, Docker Hub
    /// and distribution's token servers challenge it: an anonymous client pulls with a token
    /// `/token` gives it without credentials. A client learns where to authenticate only from a
    /// challenge, and containerd's pusher (nerdctl's, BuildKit's) cannot send a manifest's body
    /// twice: answered without a challenge until the manifest's `PUT` (every blob already in the
    /// repository, as when a tag is pushed anew), it sent the `PUT` again without its body and
    /// hung.
    func authenticate(_ call: Call, for access: (name: String, action: RegistryAction)?) throws -> String? {
        guard let header = call.request.headers[.authorization] else {
            if authority.opensEverything { return nil }
            throw challenge(call, access, "Authentication is required: an anonymous pull takes a token from the challenge's realm, asked for without credentials")
        }
        guard call.request.headers[values: .authorization].count == 1 else { throw challenge(call, access, Self.severalAuthorizations) }
        if let credentials = Self.credentials(header, scheme: "basic") {
            switch basicPrincipal(credentials) {
            case .success(let principal): return principal
            case .failure(let refusal):
                if authority.opensEverything { return nil }
                throw challenge(call, access, refusal.message)
            }
        }
        if let token = Self.credentials(header, scheme: "bearer") {
            guard let claims = authority.claims(ofBearer: String(token)) else {
                if authority.opensEverything { return nil }
                throw challenge(call, access, "The token is not valid or has expired")
            }
            guard let access else { return claims.principal }
            // A token given anonymously before `--private-pulls` was set (or by a node without
            // it) grants nothing here: under it, an anonymous caller is no one.
            if authority.privatePulls && claims.principal == nil && !authority.opensEverything {
                throw challenge(call, access, "Under --private-pulls an anonymous token stands for no one: log in first")
            }
            if authority.opensEverything || claims.grants.contains(where: { $0.allows(access.action, on: access.name) }) {
                return claims.principal
            }
            // A public pull its token does not name goes as anyone's would: anonymously, so that
            // a token pulls as its principal only what its scopes name.
            if access.action == .pull && !authority.privatePulls { return nil }
            // An anonymous token is what a client that never logged in fetched: say so.
            let anonymous = claims.principal == nil ? " (an anonymous token: log in first, e.g. `docker login` with the password GetAuthorizationToken gives)" : ""
            throw challenge(call, access, "The token does not grant \(access.action.rawValue) on \(access.name)\(anonymous)", insufficientScope: true)
        }
        if authority.opensEverything { return nil }
        throw challenge(call, access, "The Authorization header must be Basic or Bearer")
    }

    /// The repository's policy on each of `actions` (ECR operations' names) for this call's caller
    /// (``AccessPolicy``). Registry pulls are judged as BatchGetImage (manifests, referrers) and
    /// GetDownloadUrlForLayer (blobs), as ECR names them, and pushes as every ECR operation they
    /// record. Without `--private-pulls`, anyone may pull unless a policy denies them, as on ECR Public.
    func authorize(_ call: Call, _ ref: RepositoryRef, _ actions: [String]) async throws {
        do {
            try await authority.access.check(call.principal, actions: actions, on: ref, in: service, publicActions: authority.publicActions)
        } catch is AccessDenied where Set(actions).isSubset(of: AccessPolicy.pullActions) && authority.access.isStranger(call.principal, to: ref) {
            // A repository a stranger may not pull from is, to them, one that does not exist, as
            // the pages show it: a 403 would tell hidden repositories from missing ones.
            throw Decider.repositoryNotFound(ref)
        }
    }

    /// Whether the caller may read the blob `digest` from some repository of this registry that
    /// holds it: what a mount without `from` asks, so that it reaches no blob the caller could not
    /// pull, by the repository's policy and by the call's credentials (a Bearer token pulls only
    /// what its scopes name). Looks at the first ``mountSearchRepositories`` repositories only:
    /// any pusher may ask, and each look is a read; past them the client uploads the blob instead,
    /// which a mount without `from` always allows.
    func mayRead(_ digest: String, _ call: Call) async throws -> Bool {
        let registryId = authority.registryId
        let holders = try await service.reading { snapshot in
            let repositories = try snapshot.repositories(in: registryId, after: nil, limit: Self.mountSearchRepositories).map(\.repository)
            return try zip(repositories, try snapshot.layers(digest, in: repositories)).compactMap { ref, layer in
                layer == nil ? nil : (ref, try snapshot.details(ref)?.policyText)
            }
        }
        for (ref, policyText) in holders {
            // As the principal the credentials pull that repository as (nil: anonymously).
            let puller: String?
            do { puller = try authenticate(call, for: (ref.repositoryName, .pull)) } catch { continue }
            if (try? authority.access.check(puller, action: "GetDownloadUrlForLayer", on: ref, policyText: policyText, publicActions: authority.publicActions)) != nil {
                return true
            }
        }
        return false
    }

    static let mountSearchRepositories = 1000

    /// Authorization is not a list: credentials from two lines would be judged as one.
    static let severalAuthorizations = "Send one Authorization header, not several"

    /// The principal of Basic credentials `AWS:<password>`, or why they are refused.
    func basicPrincipal(_ credentials: Substring) -> Result<String, RegistryAuthority.PasswordRefusal> {
        guard let decoded = Data(base64Encoded: String(credentials)), let text = String(data: decoded, encoding: .utf8),
              let colon = text.firstIndex(of: ":") else { return .failure(.notAPassword) }
        return passwordPrincipal(user: text[..<colon], password: text[text.index(after: colon)...])
    }

    /// The principal of user `AWS` with a password GetAuthorizationToken gave, or why it is refused.
    func passwordPrincipal(user: Substring, password: Substring) -> Result<String, RegistryAuthority.PasswordRefusal> {
        guard user == "AWS" else { return .failure(.notAPassword) }
        return authority.checkPassword(String(password))
    }

    /// The credentials of an `Authorization` header in `scheme` (case-insensitive).
    static func credentials(_ header: String, scheme: String) -> Substring? {
        guard header.count > scheme.count + 1, header.prefix(scheme.count).lowercased() == scheme,
              header[header.index(header.startIndex, offsetBy: scheme.count)] == " " else { return nil }
        return header.dropFirst(scheme.count + 1).drop { $0 == " " }
    }

    /// 401 `UNAUTHORIZED` with the Bearer challenge that sends a client to `/token` for `access`.
    private func challenge(_ call: Call, _ access: (name: String, action: RegistryAction)?, _ message: String, insufficientScope: Bool = false) -> RegistryError {
        let base = publicURL ?? "http://" + Self.host(of: call.request)
        let service = base.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? base
        var challenge = "Bearer realm=\"\(base)/token\",service=\"\(service)\""
        if let access, (try? Validation.repositoryName(access.name)) != nil {
            let actions = access.action == .pull ? "pull" : "pull,\(access.action.rawValue)"
            challenge += ",scope=\"repository:\(access.name):\(actions)\""
        }
        if insufficientScope { challenge += ",error=\"insufficient_scope\"" }
        var error = RegistryError(.unauthorized, message)
        error.headers[.wwwAuthenticate] = challenge
        return error
    }

    /// The host and port the client reached, for the challenge's realm; quotes and control
    /// characters are dropped, so that a header cannot be forged through it.
    static func host(of request: Request) -> String {
        let host = request.head.authority ?? "localhost"
        return String(host.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "\\" }.prefix(255).map(Character.init))
    }
}
