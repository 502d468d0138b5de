import AWSJSON
import ECRRequests
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import UploadCore
import UploadService
import UploadStore

/// Catalog data (a repository's and the registry's) and tags.
extension ECRPublicService {
    func getRepositoryCatalogData(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.accountRegistryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        return try await service.reading { [self] snapshot in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: snapshot, settings: settings)
            return .object([("catalogData", catalogJSON(try snapshot.details(ref), of: ref))])
        }
    }

    func putRepositoryCatalogData(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let request = try ECRRequests.putRepositoryCatalogData(body)
        let put = try await service.putRepositoryCatalogData(request.command, logo: request.logo, metadata)
        return .object([("catalogData", catalogJSON(RepositoryDetails(catalog: put), of: put.repository))])
    }

    func getRegistryCatalogData(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        .object([("registryCatalogData", try await registryCatalogJSON())])
    }

    func putRegistryCatalogData(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let outcome = try await service.execute(.putRegistryCatalogData(ECRRequests.putRegistryCatalogData(body)), metadata)
        // The name it recorded (a retry's too), not whatever a later call has set since.
        if let put = outcome.events.lazy.compactMap({ $0.event.payload as? RegistryCatalogDataPut }).first {
            return .object([("registryCatalogData", .object([("displayName", .string(put.displayName))]))])
        }
        return .object([("registryCatalogData", try await registryCatalogJSON())])
    }

    func tagResource(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        try await service.execute(.tagResource(ECRRequests.tagResource(body)), metadata)
        return .object([])
    }

    func untagResource(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        try await service.execute(.untagResource(ECRRequests.untagResource(body)), metadata)
        return .object([])
    }

    func listTagsForResource(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let arn = try RepositoryARN(body.string("resourceArn"))
        return try await service.reading { [self] snapshot in
            let ref = try Decider.repository(arn, state: snapshot, settings: settings)
            let tags = try snapshot.details(ref)?.tags ?? []
            return .object([("tags", .array(tags.map { .object([("Key", .string($0.key)), ("Value", .string($0.value))]) }))])
        }
    }

    /// RepositoryCatalogData: the members set, and the logo as a URL on this server.
    func catalogJSON(_ details: RepositoryDetails?, of ref: RepositoryRef) -> JSONValue {
        guard let details else { return .object([]) }
        return .object(sorting: [
            ("description", details.description.map(JSONValue.string)),
            ("architectures", details.architectures.isEmpty ? nil : .array(details.architectures.map(JSONValue.string))),
            ("operatingSystems", details.operatingSystems.isEmpty ? nil : .array(details.operatingSystems.map(JSONValue.string))),
            ("logoUrl", details.logoImageDigest.map { .string(logoURL(of: ref, digest: $0)) }),
            ("aboutText", details.aboutText.map(JSONValue.string)),
            ("usageText", details.usageText.map(JSONValue.string)),
        ])
    }

    private func registryCatalogJSON() async throws -> JSONValue {
        let registryId = settings.defaultRegistryId
        let catalog = try await service.reading { try $0.registryCatalog(registryId) }
        return .object(sorting: [("displayName", catalog.map { .string($0.displayName) })])
    }

    /// `GET /logos/<registryId>/<digest>/<repositoryName>`: served only while it is that
    /// repository's logo, so that the path reaches no other blob.
    func logoURL(of ref: RepositoryRef, digest: String) -> String {
        (registry.publicURL ?? "http://" + endpoint.hostAndPort) + "/logos/\(ref.registryId)/\(digest)/\(ref.repositoryName)"
    }

    func addLogoRoute(to router: Router<APIRequestContext>) {
        router.getAndHead("/logos/:registryId/:digest/**") { request, context in
            // Shown to whom the gallery shows its repository (``mayView``): a page session's key,
            // a signed request's, or anyone's; under --private-pulls one of the first two. An
            // answer that depended on who asked is no shared cache's to keep.
            let authority = self.registry.authority
            let gated = authority.privatePulls && !authority.opensEverything
            var viewer = self.viewer(request)?.accessKeyId
            if viewer == nil, gated || request.headers[.authorization] != nil {
                do { viewer = try self.principal(of: request, context: context) } catch { return Self.errorResponse(error) }
            }
            let response = try await self.logo(
                RepositoryRef(registryId: context.parameters.require("registryId"), repositoryName: context.parameters.getCatchAll().joined(separator: "/")),
                digest: context.parameters.require("digest"), viewer: viewer, cachedBy: gated || viewer != nil ? "private" : "public")
            do { try AnswerHolding.checkHeld() } catch { return Self.errorResponse(error) }
            return response
        }
    }

    /// How long a logo may be cached. Its bytes never change under its digest, but who may see
    /// them does: a repository made private, or deleted, is no longer shown from caches after it.
    static let logoCacheSeconds = 3600

    /// The logo's bytes, with the image type its first bytes name; never sniffed or run by a
    /// browser as anything else.
    private func logo(_ ref: RepositoryRef, digest: String, viewer: String?, cachedBy caches: String) async throws -> Response {
        let details = try await service.reading { try $0.details(ref) }
        guard Validation.isRegistryDigest(digest), details?.logoImageDigest == digest, mayView(ref, details, viewer), mayReadCatalog(ref, details, viewer),
              let size = service.storage.blobSize(digest), size <= RepositoryCatalogInput.largestLogoBytes else {
            return Response(status: .notFound, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "no such logo\n")))
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let read = try bytes.withUnsafeMutableBytes { try service.storage.openBlob(digest).read(at: 0, into: $0) }
        guard read == Int(size) else { throw StoreError(.io, "the logo \(digest) is shorter than its \(size) bytes") }
        return Response(
            status: .ok,
            headers: [
                .contentType: Self.imageType(of: bytes), .cacheControl: caches + ", max-age=\(Self.logoCacheSeconds)",
                .contentSecurityPolicy: "default-src 'none'; sandbox",
            ],
            body: Self.piecewise(ByteBuffer(bytes: bytes)))
    }

    static func imageType(of bytes: [UInt8]) -> String {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return "image/png" }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if bytes.starts(with: Array("GIF8".utf8)) { return "image/gif" }
        if bytes.count >= 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) { return "image/webp" }
        return "application/octet-stream"
    }
}
