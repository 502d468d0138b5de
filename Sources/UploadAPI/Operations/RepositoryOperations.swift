import AWSJSON
import ECRRequests
import Foundation
import UploadCore
import UploadService
import UploadStore

extension ECRPublicService {
    func createRepository(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let request = try ECRRequests.createRepository(body)
        let (created, catalog) = try await service.createRepository(request.command, logo: request.logo, metadata)
        return .object([("catalogData", catalogJSON(catalog.map(RepositoryDetails.init(catalog:)), of: created.repository)), ("repository", repositoryJSON(created.repository, createdAt: created.createdAt))])
    }

    func describeRepositories(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try settings.resolveRegistry(Validation.accountRegistryId(body.string("registryId")))
        let limit = try Validation.maxResults(body.int64("maxResults"))
        let token = try body.string("nextToken")
        if let names = try body.strings("repositoryNames") {
            guard (1...100).contains(names.count) else {
                throw APIError.invalidParameter("'repositoryNames' must have between 1 and 100 items; it has \(names.count).")
            }
            guard token == nil, limit == nil else {
                throw APIError.invalidParameter("nextToken and maxResults cannot be used together with repositoryNames")
            }
            let refs = try names.map { RepositoryRef(registryId: registryId, repositoryName: try Validation.repositoryName($0, member: "repositoryNames")) }
            let summaries = try await service.reading { reader in
                try refs.map { ref in
                    guard let summary = try reader.repository(ref) else {
                        throw CommandError(.repositoryNotFound, "The repository with name '\(ref.repositoryName)' does not exist in the registry with id '\(ref.registryId)'")
                    }
                    return summary
                }
            }
            return .object([("repositories", .array(summaries.map { repositoryJSON($0.repository, createdAt: $0.createdAt) }))])
        }
        let pageSize = limit ?? Pagination.defaultLimit
        let scope = Pagination.scope("DescribeRepositories")
        let after = try Pagination.after(token, scope: scope)
        let rows = try await service.reading { try $0.repositories(in: registryId, after: after, limit: pageSize + 1) }
            .map { (name: $0.repositoryName, value: $0) }
        let page = Pagination.page(rows, limit: pageSize, scope: scope)
        return .object(sorting: [
            ("repositories", .array(page.items.map { repositoryJSON($0.repository, createdAt: $0.createdAt) })),
            ("nextToken", page.nextToken.map(JSONValue.string)),
        ])
    }

    func deleteRepository(_ body: AWSJSONBody, _ metadata: RequestMetadata, refusalUnlessRetry: AccessDenied? = nil) async throws -> JSONValue {
        let removed = try await service.deleteRepository(ECRRequests.deleteRepository(body), metadata, refusalUnlessRetry: refusalUnlessRetry)
        return .object([("repository", repositoryJSON(removed.repository, createdAt: removed.createdAt))])
    }

    /// A token for `docker login` (`aws ecr-public get-login-password`): base64 of
    /// `AWS:<password>` with exactly one colon, valid 12 hours; the registry front end takes the
    /// password as Basic credentials (``RegistryAuthority``).
    func getAuthorizationToken(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        // The password docker, podman and skopeo log in with (`AWS:<password>`), for the key that signed this call.
        let (password, expiresAt) = registry.authority.password(for: metadata.principal ?? "anonymous")
        return .object([("authorizationData", .object([
            ("authorizationToken", .string(Data("AWS:\(password)".utf8).base64EncodedString())),
            ("expiresAt", .epochSeconds(expiresAt)),
        ]))])
    }

    func describeRegistries(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        _ = try Validation.maxResults(body.int64("maxResults"))
        if let token = try body.string("nextToken") { _ = try Pagination.after(token, scope: Pagination.scope("DescribeRegistries")); throw APIError.invalidParameter("There is no page after the only registry") }
        let id = settings.defaultRegistryId
        let registry = JSONValue.object(sorting: [
            ("registryId", .string(id)),
            ("registryArn", .string(RepositoryRef.registryARN(id))),
            ("registryUri", .string(endpoint.hostAndPort)),
            ("verified", .bool(false)),
            ("aliases", .array([.object(sorting: [
                ("name", .string(settings.alias)), ("status", .string("ACTIVE")),
                ("primaryRegistryAlias", .bool(true)), ("defaultRegistryAlias", .bool(true)),
            ])])),
        ])
        return .object([("registries", .array([registry]))])
    }

    func repositoryJSON(_ ref: RepositoryRef, createdAt: Timestamp?) -> JSONValue {
        .object(sorting: [
            ("repositoryArn", .string(ref.arn)),
            ("registryId", .string(ref.registryId)),
            ("repositoryName", .string(ref.repositoryName)),
            // Where a registry client pushes to: this server's registry front end.
            ("repositoryUri", .string("\(endpoint.hostAndPort)/\(ref.repositoryName)")),
            ("createdAt", createdAt.map(JSONValue.epochSeconds)),
        ])
    }
}
