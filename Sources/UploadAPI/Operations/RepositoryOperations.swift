import AWSJSON
import Foundation
import UploadCore
import UploadStore

extension ECRPublicService {
    func createRepository(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let command = try CreateRepository(repositoryName: body.string("repositoryName"))
        let outcome = try await store.execute(.createRepository(command), metadata: metadata)
        guard case .repositoryCreated(let created)? = outcome.events.first?.event else { throw StoreError(.corrupt, "CreateRepository recorded no RepositoryCreated") }
        return .object([("catalogData", .object([])), ("repository", repositoryJSON(created.repository, createdAt: created.createdAt))])
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
            let summaries = try store.read { reader in
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
        let after = try Pagination.after(token)
        let rows = try store.read { reader in
            try reader.entries(.repositories, prefix: Array("\(registryId)/".utf8), after: after, limit: pageSize + 1)
                .map { (name: $0.name, value: try RepositorySummary(decoding: $0.value)) }
        }
        let page = Pagination.page(rows, limit: pageSize)
        return .object(sorting: [
            ("repositories", .array(page.items.map { repositoryJSON($0.repository, createdAt: $0.createdAt) })),
            ("nextToken", page.nextToken.map(JSONValue.string)),
        ])
    }

    func deleteRepository(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let command = try DeleteRepository(
            registryId: Validation.accountRegistryId(body.string("registryId")),
            repositoryName: body.string("repositoryName"), force: body.bool("force") ?? false)
        let ref = try store.read { reader in try Decider.existingRepository(command.registryId, command.repositoryName, state: reader.tables, settings: settings) }
        let before = try store.read { try $0.repository(ref) }
        let outcome = try await store.execute(.deleteRepository(command), metadata: metadata)
        // The aborted uploads' staged bytes are no longer needed, now that the abort has committed.
        for case .uploadAborted(let aborted) in outcome.events.map(\.event) {
            try await uploadLocks.withLock(aborted.uploadId) { self.blobs.removeStaging(aborted.uploadId) }
        }
        return .object([("repository", repositoryJSON(ref, createdAt: before?.createdAt))])
    }

    /// A token for `docker login` (`aws ecr-public get-login-password`): base64 of
    /// `AWS:<password>` with exactly one colon, valid 12 hours. Registry-side login is not served
    /// by this coordinator; the token lets the CLI flow complete.
    func getAuthorizationToken(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let password = (0..<4).map { _ in UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "") }.joined()
        let expiresAt = Timestamp(millisecondsSinceEpoch: store.configuration.clock.now().millisecondsSinceEpoch + 12 * 3_600_000)
        return .object([("authorizationData", .object([
            ("authorizationToken", .string(Data("AWS:\(password)".utf8).base64EncodedString())),
            ("expiresAt", .epochSeconds(expiresAt)),
        ]))])
    }

    func describeRegistries(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        _ = try Validation.maxResults(body.int64("maxResults"))
        if let token = try body.string("nextToken") { _ = try Pagination.after(token); throw APIError.invalidParameter("There is no page after the only registry") }
        let id = settings.defaultRegistryId
        let registry = JSONValue.object(sorting: [
            ("registryId", .string(id)),
            ("registryArn", .string("arn:aws:ecr-public::\(id):registry/\(id)")),
            ("registryUri", .string("public.ecr.aws/\(settings.alias)")),
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
            ("repositoryArn", .string("arn:aws:ecr-public::\(ref.registryId):repository/\(ref.repositoryName)")),
            ("registryId", .string(ref.registryId)),
            ("repositoryName", .string(ref.repositoryName)),
            ("repositoryUri", .string("public.ecr.aws/\(settings.alias)/\(ref.repositoryName)")),
            ("createdAt", createdAt.map(JSONValue.epochSeconds)),
        ])
    }
}
