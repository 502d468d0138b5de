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
/// anonymous callers (`--allow-anonymous`, public pulls) are of this registry, and only `*` names them.
public struct AccessPolicy: Sendable {
    let principals: [String: PolicyPrincipal]
    let registryId: String

    public init(authentication: ECRPublicService.Authentication, registryId: String) {
        self.registryId = registryId
        var principals: [String: PolicyPrincipal] = [:]
        if case .sigV4(let verifier) = authentication {
            for key in verifier.keys.values {
                principals[key.accessKeyId] = PolicyPrincipal(registryId: key.registryId ?? registryId, name: key.name ?? key.accessKeyId)
            }
        }
        self.principals = principals
    }

    /// The principal of an access key id; `nil` for an anonymous caller.
    func principal(_ accessKeyId: String?) -> PolicyPrincipal? { accessKeyId.flatMap { principals[$0] } }

    /// An operation of the registry itself: keys of another registry are refused.
    func checkRegistryWide(_ accessKeyId: String?, action: String) throws(AccessDenied) {
        guard let caller = principal(accessKeyId), caller.registryId != registryId else { return }
        throw AccessDenied("User: \(caller.arn) is not authorized to perform: ecr-public:\(action) on resource: arn:aws:ecr-public::\(registryId):registry/\(registryId)")
    }

    /// `action` (an ECR operation's name, `PutImage`) on `ref`, judged by its policy.
    func check(_ accessKeyId: String?, action: String, on ref: RepositoryRef, policyText: String?) throws(AccessDenied) {
        let caller = principal(accessKeyId)
        let resource = "arn:aws:ecr-public::\(ref.registryId):repository/\(ref.repositoryName)"
        // A stored policy parsed when it was set; one that no longer does (a newer binary's rules) allows no one else.
        let policy = policyText.flatMap { try? RepositoryPolicy($0) }
        let allowed = policy.map { $0.allows(caller, action: "ecr-public:" + action, resource: resource, owner: ref.registryId) }
            ?? ((caller?.registryId ?? ref.registryId) == ref.registryId)
        guard !allowed else { return }
        let who = caller?.arn ?? "anonymous"
        throw AccessDenied("User: \(who) is not authorized to perform: ecr-public:\(action) on resource: \(resource)\(policy == nil ? "" : " because of the repository's policy")")
    }

    /// ``check(_:action:on:policyText:)`` against the repository's policy as `service` reads it now.
    func check(_ accessKeyId: String?, action: String, on ref: RepositoryRef, in service: UploadService) throws {
        let policyText = try service.read { try $0.details(ref)?.policyText }
        try check(accessKeyId, action: action, on: ref, policyText: policyText)
    }
}

/// A caller refused by ``AccessPolicy``: AccessDeniedException on the AWS API, `DENIED` on the registry's.
public struct AccessDenied: Error, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
