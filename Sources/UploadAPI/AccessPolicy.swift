import Synchronization
import UploadCore
import UploadService
import UploadStore

/// What a caller may do, once SigV4 or a registry password has said who it is:
/// - **The registry's own operations** (CreateRepository, DescribeRepositories, DescribeRegistries,
///   the registry's catalog data) are for keys of this registry.
/// - **An operation on a repository**, through the AWS API or the registry front end, is judged
///   by the repository's policy (``RepositoryPolicy``): a Deny that names the caller wins; keys of
///   this registry are otherwise allowed, and keys of another registry need an Allow that names them.
///
/// Each access key is the user `arn:aws:iam::<registry>:user/<name>` of its credentials line;
/// anonymous callers may do what the caller says anyone may (public pulls, the gallery's reads)
/// and what a policy allows `*`, and under `--allow-anonymous`, everything.
public struct AccessPolicy: Sendable {
    /// By access key id.
    let principals: [String: PolicyPrincipal]
    let registryId: String
    /// `--allow-anonymous`: no key is known, and every caller counts as anonymous.
    let opensEverything: Bool
    private let policies = ParsedPolicies()

    /// The registry front end's pulls, which anyone may make unless a policy denies them (without
    /// `--private-pulls`), as on ECR Public.
    public static let pullActions: Set<String> = ["BatchGetImage", "GetDownloadUrlForLayer", "DescribeImageTags"]

    /// What the gallery shows anyone of a repository they may pull from, unless a policy denies
    /// it: its images and catalog data, as ECR Public's gallery does.
    static let galleryReadActions = pullActions.union(["DescribeImages", "GetRepositoryCatalogData"])

    public init(authentication: ECRPublicService.Authentication, registryId: String) {
        var principals: [String: PolicyPrincipal] = [:]
        if case .sigV4(let verifier) = authentication {
            for key in verifier.keys.values {
                principals[key.accessKeyId] = PolicyPrincipal(registryId: key.registryId ?? registryId, name: key.name ?? key.accessKeyId)
            }
        }
        self.init(principals: principals, registryId: registryId, opensEverything: { if case .anonymous = authentication { true } else { false } }())
    }

    init(principals: [String: PolicyPrincipal], registryId: String, opensEverything: Bool) {
        self.principals = principals
        self.registryId = registryId
        self.opensEverything = opensEverything
    }

    /// Who an access key id is: `nil` for an anonymous caller (no key, or any under
    /// `--allow-anonymous`); a key this server does not know (a token outliving its key) is refused.
    func caller(_ accessKeyId: String?) throws(AccessDenied) -> PolicyPrincipal? {
        guard let accessKeyId, !opensEverything else { return nil }
        guard let principal = principals[accessKeyId] else { throw AccessDenied("The access key \(accessKeyId) is no longer configured") }
        return principal
    }

    /// The principal of an access key id, when known.
    func principal(_ accessKeyId: String?) -> PolicyPrincipal? { try? caller(accessKeyId) }

    /// An operation of the registry itself: keys of another registry are refused.
    func checkRegistryWide(_ accessKeyId: String?, action: String) throws(AccessDenied) {
        guard let caller = try caller(accessKeyId), caller.registryId != registryId else { return }
        throw AccessDenied("User: \(caller.arn) is not authorized to perform: ecr-public:\(action) on resource: \(RepositoryRef.registryARN(registryId))")
    }

    /// `action` (an ECR operation's name, `PutImage`) on `ref`, judged by its policy.
    /// - Parameter publicActions: what anyone may do unless the policy denies it; anything else an
    ///   anonymous caller may do only where the policy allows `*` (or under `--allow-anonymous`).
    func check(_ accessKeyId: String?, action: String, on ref: RepositoryRef, policyText: String?, publicActions: Set<String> = []) throws(AccessDenied) {
        let caller = try caller(accessKeyId)
        let resource = ref.arn
        let publicRead = publicActions.contains(action)
        // An anonymous caller is nobody's own but under `--allow-anonymous`: a path that reached
        // here without authenticating must not act as the registry's owner.
        let isOwn = caller.map { $0.registryId == ref.registryId } ?? opensEverything
        let allowed: Bool
        switch policyText.map(policies.policy) {
        case nil:
            allowed = isOwn || publicRead
        case .success(let policy)?:
            allowed = policy.allows(caller, action: "ecr-public:" + action, resource: resource, owner: ref.registryId, byDefault: isOwn || publicRead)
        case .failure?:
            // A stored policy this binary cannot read (it was read when set, by other rules) denies
            // everything but replacing or deleting it, by the registry's own keys: it never fails open.
            allowed = isOwn && ["SetRepositoryPolicy", "DeleteRepositoryPolicy", "GetRepositoryPolicy"].contains(action)
        }
        guard !allowed else { return }
        // Only the registry's own keys learn that a policy denied it: to anyone else that would
        // tell a repository with a policy from one that does not exist.
        let because = policyText != nil && caller?.registryId == ref.registryId ? " because of the repository's policy" : ""
        throw AccessDenied("User: \(caller?.arn ?? "anonymous") is not authorized to perform: ecr-public:\(action) on resource: \(resource)\(because)")
    }

    /// Whether the caller of `accessKeyId` is no key of `ref`'s registry (anonymous, or another
    /// registry's): to them a repository they may not read does not exist. A key no longer
    /// configured is none: it is told so, not that the repository is missing.
    func isStranger(_ accessKeyId: String?, to ref: RepositoryRef) -> Bool { isStranger(accessKeyId, toRegistry: ref.registryId) }

    /// Whether the caller of `accessKeyId` is no key of the registry `registryId` (as above).
    func isStranger(_ accessKeyId: String?, toRegistry registryId: String) -> Bool {
        guard let accessKeyId else { return true }
        guard let principal = principal(accessKeyId) else { return opensEverything }
        return principal.registryId != registryId
    }

    /// Each of `actions` against the repository's policy as `service` reads it now (one read).
    func check(_ accessKeyId: String?, actions: [String], on ref: RepositoryRef, in service: UploadService, publicActions: Set<String> = []) async throws {
        let policyText = try await service.reading { try $0.details(ref)?.policyText }
        for action in actions { try check(accessKeyId, action: action, on: ref, policyText: policyText, publicActions: publicActions) }
    }
}

/// Repository policies as read, by their text's bytes: each is parsed once, not at every check (a
/// gallery page checks every repository it shows, and a policy may be 10 KB of JSON). Keyed by the
/// bytes, not the `String`: two texts Swift holds equal (a Kelvin sign and a `K`, an accent
/// composed or not) may name different principals, which policies compare byte for byte. Past
/// ``capacity`` texts the cache starts again, so it holds at most that many, whatever is set.
final class ParsedPolicies: Sendable {
    static let capacity = 1024
    private let parsed = Mutex<[[UInt8]: Result<RepositoryPolicy, CommandError>]>([:])

    /// The policy `text` holds, or why it holds none.
    func policy(_ text: String) -> Result<RepositoryPolicy, CommandError> {
        let key = Array(text.utf8)
        if let known = parsed.withLock({ $0[key] }) { return known }
        let result = Result { () throws(CommandError) in try RepositoryPolicy(text) }  // outside the lock
        parsed.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll(keepingCapacity: true) }
            cache[key] = result
        }
        return result
    }

    /// How many texts are held.
    var count: Int { parsed.withLock { $0.count } }
}

/// A caller refused by ``AccessPolicy``: AccessDeniedException on the AWS API, `DENIED` on the registry's.
public struct AccessDenied: Error, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
