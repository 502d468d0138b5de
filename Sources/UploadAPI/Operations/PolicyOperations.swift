import AWSJSON
import UploadCore
import UploadService
import UploadStore

/// Repository policies, and how each call is judged by them (``AccessPolicy``).
extension ECRPublicService {
    /// Judges a call before it runs: an operation on a repository by the repository's policy, the
    /// registry's own operations by the caller's registry. A request that names its repository
    /// badly is left to its operation, which refuses it.
    func authorize(_ operation: String, _ body: AWSJSONBody, principal: String?) async throws {
        let access = registry.authority.access
        switch operation {
        case "GetAuthorizationToken":
            return  // a login: what the password may do is judged where it is used
        case "CreateRepository", "DescribeRepositories", "DescribeRegistries", "GetRegistryCatalogData", "PutRegistryCatalogData":
            try access.checkRegistryWide(principal, action: operation)
        case "TagResource", "UntagResource", "ListTagsForResource":
            guard let arn = try? RepositoryARN(body.string("resourceArn")), arn.registryId == settings.defaultRegistryId else { return }
            try await access.check(principal, actions: [operation], on: RepositoryRef(registryId: arn.registryId, repositoryName: arn.repositoryName), in: service)
        default:
            guard let name = try? Validation.repositoryName(body.string("repositoryName")),
                  let registryId = try? settings.resolveRegistry(Validation.registryId(body.string("registryId"))) else { return }
            try await access.check(principal, actions: [operation], on: RepositoryRef(registryId: registryId, repositoryName: name), in: service)
        }
    }

    /// Without `force`, a policy that would deny its own caller SetRepositoryPolicy is refused:
    /// setting it would lock them out of changing it again.
    func setRepositoryPolicy(_ body: AWSJSONBody, _ metadata: RequestMetadata, refusalUnlessRetry: AccessDenied? = nil) async throws -> JSONValue {
        let command = try SetRepositoryPolicy(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            policyText: body.string("policyText"), force: body.bool("force") ?? false)
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(command.registryId), repositoryName: command.repositoryName)
        // A caller denied the call altogether (here only as a possible retry) is told that, not this.
        if !command.force, refusalUnlessRetry == nil {
            // Judged as the next SetRepositoryPolicy would be, under the new policy.
            do {
                try registry.authority.access.check(metadata.principal, action: "SetRepositoryPolicy", on: ref, policyText: command.policyText)
            } catch {
                throw APIError.invalidParameter("The policy would deny you ecr-public:SetRepositoryPolicy on this repository, so that it could not be changed again; set force to set it anyway")
            }
        }
        let outcome = try await store.execute(.setRepositoryPolicy(command), metadata: metadata, refusalUnlessRetry: refusalUnlessRetry)
        guard case .repositoryPolicySet(let set)? = outcome.events.first?.event else { throw APIError.server("SetRepositoryPolicy recorded no policy") }
        return policyJSON(set.repository, set.policyText)
    }

    func getRepositoryPolicy(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.accountRegistryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        return try await service.reading { [self] snapshot in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: snapshot, settings: settings)
            guard let text = try snapshot.details(ref)?.policyText else { throw Decider.policyNotFound(ref) }
            return policyJSON(ref, text)
        }
    }

    func deleteRepositoryPolicy(_ body: AWSJSONBody, _ metadata: RequestMetadata, refusalUnlessRetry: AccessDenied? = nil) async throws -> JSONValue {
        let command = try DeleteRepositoryPolicy(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"))
        let outcome = try await store.execute(.deleteRepositoryPolicy(command), metadata: metadata, refusalUnlessRetry: refusalUnlessRetry)
        guard case .repositoryPolicyDeleted(let deleted)? = outcome.events.first?.event else { throw APIError.server("DeleteRepositoryPolicy recorded no deletion") }
        return policyJSON(deleted.repository, deleted.policyText)
    }

    private func policyJSON(_ ref: RepositoryRef, _ text: String) -> JSONValue {
        .object([("registryId", .string(ref.registryId)), ("repositoryName", .string(ref.repositoryName)), ("policyText", .string(text))])
    }
}
