import AWSJSON
import ECRRequests
import UploadCore
import UploadService
import UploadStore

extension ECRPublicService {
    func putImage(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let pushed = try await service.putImage(ECRRequests.putImage(body), metadata)
        return .object([("image", .object(sorting: [
            ("registryId", .string(pushed.registryId)), ("repositoryName", .string(pushed.repositoryName)),
            ("imageId", .object(sorting: [("imageDigest", .string(pushed.imageDigest)), ("imageTag", pushed.imageTag.map(JSONValue.string))])),
            ("imageManifest", .string(pushed.imageManifest)), ("imageManifestMediaType", .string(pushed.imageManifestMediaType)),
        ]))])
    }

    func describeImages(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.accountRegistryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        let limit = try Validation.maxResults(body.int64("maxResults"))
        let token = try body.string("nextToken")
        let ids = try ECRRequests.imageIds(body)
        // Every input is judged before the repository is looked up, as in every other operation:
        // a request that is wrong is refused as such, whether or not the repository exists.
        if let ids {
            guard (1...100).contains(ids.count) else { throw APIError.invalidParameter("'imageIds' must have between 1 and 100 items") }
            guard token == nil, limit == nil else {
                throw APIError.invalidParameter("nextToken and maxResults cannot be used together with imageIds")
            }
            for (index, id) in ids.enumerated() {
                // The model's bound on a tag; any tag within it is looked up (as BatchDeleteImage does).
                if let tag = id.imageTag { try Validation.length(tag, member: "imageIds.\(index + 1).member.imageTag", min: 1, max: 300) }
            }
        }
        let scope = Pagination.scope("DescribeImages", repositoryName)
        let firstCursor = ids == nil ? try Pagination.after(token, scope: scope) : nil
        return try await service.reading { [self] snapshot in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: snapshot, settings: settings)
            if let ids {
                // Each kind of record read for every id at once (PostgreSQL answered 100 ids in 300
                // round trips), the images without their manifests (up to 4 MiB), which the answer
                // does not show.
                var tagged = try snapshot.tags(ref, ids.compactMap { $0.imageDigest == nil ? $0.imageTag : nil }).makeIterator()
                let digests = ids.map { id in id.imageDigest?.lowercased() ?? id.imageTag.flatMap { _ in tagged.next()??.imageDigest } }
                var images = ImagesReadOnce(snapshot, ref)
                try images.readAhead(digests.compactMap { $0 })
                let found = try digests.map { try $0.flatMap { try images.image($0) } }
                let foundDigests = found.compactMap { $0?.imageDigest }
                var tagsOfImage: [String: [String]] = [:]  // looked up, never iterated
                for (digest, tags) in zip(foundDigests, try snapshot.tags(of: foundDigests, in: ref)) { tagsOfImage[digest] = tags }
                let details = try zip(ids, found).map { id, image in
                    let tags = image.flatMap { tagsOfImage[$0.imageDigest] } ?? []
                    guard let image, id.imageTag.map({ tag in tags.contains { $0.sameBytes(as: tag) } }) ?? true else {
                        throw CommandError(.imageNotFound, "The image with imageId {imageDigest:'\(id.imageDigest ?? "null")', imageTag:'\(id.imageTag ?? "null")'} does not exist within the repository with name '\(ref.repositoryName)' in the registry with id '\(ref.registryId)'")
                    }
                    return imageDetailJSON(image, tags: tags, ref)
                }
                return .object([("imageDetails", .array(details))])
            }
            let pageSize = limit ?? Pagination.defaultLimit
            // Read a few records at a time in this snapshot, without their manifests, each made its
            // answer at once. (PostgreSQL still sends the manifests: a page of 1,000 images of 4 MiB
            // manifests holds 16 of them at a time, not gigabytes.)
            var rows: [(name: String, value: JSONValue)] = []
            var cursor = firstCursor
            while rows.count <= pageSize {
                let wanted = min(Self.imagesDecodedAtOnce, pageSize + 1 - rows.count)
                let images = try snapshot.imagesWithoutManifests(in: ref, after: cursor, limit: wanted)
                // Their tags in one read: the images of a page are consecutive digests.
                var tags: [String: [String]] = [:]  // looked up, never iterated
                if let first = images.first, let last = images.last {
                    for entry in try snapshot.imageTags(in: ref, from: first.imageDigest, through: last.imageDigest) {
                        tags[entry.digest, default: []].append(entry.tag)
                    }
                }
                rows += images.map { (name: $0.imageDigest, value: imageDetailJSON($0, tags: tags[$0.imageDigest] ?? [], ref)) }
                guard images.count == wanted, let last = images.last else { break }
                cursor = last.imageDigest
            }
            let page = Pagination.page(rows, limit: pageSize, scope: scope)
            return .object(sorting: [("imageDetails", .array(page.items)), ("nextToken", page.nextToken.map(JSONValue.string))])
        }
    }

    /// The most image records DescribeImages reads at once.
    static let imagesDecodedAtOnce = 16

    func describeImageTags(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.accountRegistryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        let pageSize = try Validation.maxResults(body.int64("maxResults")) ?? Pagination.defaultLimit
        let scope = Pagination.scope("DescribeImageTags", repositoryName)
        let after = try Pagination.after(body.string("nextToken"), scope: scope)
        return try await service.reading { [self] snapshot in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: snapshot, settings: settings)
            let rows = try snapshot.tags(in: ref, after: after, limit: pageSize + 1).map { (name: $0.name, value: (tag: $0.name, record: $0.record)) }
            let page = Pagination.page(rows, limit: pageSize, scope: scope)
            var images = ImagesReadOnce(snapshot, ref)
            try images.readAhead(page.items.map(\.record.imageDigest))
            let details: [JSONValue] = try page.items.compactMap { item in
                guard let image = try images.image(item.record.imageDigest) else { return nil }
                return .object(sorting: [
                    ("imageTag", .string(item.tag)), ("createdAt", .epochSeconds(item.record.createdAt)),
                    ("imageDetail", .object(sorting: [
                        ("imageDigest", .string(image.imageDigest)), ("imageSizeInBytes", .uint(image.imageSizeInBytes)),
                        ("imagePushedAt", .epochSeconds(image.pushedAt)), ("imageManifestMediaType", .string(image.imageManifestMediaType)),
                        ("artifactMediaType", image.artifactMediaType.map(JSONValue.string)),
                    ])),
                ])
            }
            return .object(sorting: [("imageTagDetails", .array(details)), ("nextToken", page.nextToken.map(JSONValue.string))])
        }
    }

    func batchDeleteImage(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let outcome = try await service.batchDeleteImage(ECRRequests.batchDeleteImage(body), metadata)
        let deleted: [JSONValue] = outcome.imageIds.map { id in
            .object(sorting: [("imageDigest", id.imageDigest.map(JSONValue.string)), ("imageTag", id.imageTag.map(JSONValue.string))])
        }
        let failures: [JSONValue] = outcome.failures.map { failure in
            .object(sorting: [
                ("imageId", .object(sorting: [("imageDigest", failure.imageId.imageDigest.map(JSONValue.string)), ("imageTag", failure.imageId.imageTag.map(JSONValue.string))])),
                ("failureCode", .string(failure.failureCode.rawValue)), ("failureReason", .string(failure.failureReason)),
            ])
        }
        return .object([("failures", .array(failures)), ("imageIds", .array(deleted))])
    }

    /// - Parameter tags: the image's, in byte order.
    func imageDetailJSON(_ image: ImageRecord, tags: [String], _ ref: RepositoryRef) -> JSONValue {
        .object(sorting: [
            ("registryId", .string(ref.registryId)), ("repositoryName", .string(ref.repositoryName)),
            ("imageDigest", .string(image.imageDigest)), ("imageTags", tags.isEmpty ? nil : .array(tags.map(JSONValue.string))),
            ("imageSizeInBytes", .uint(image.imageSizeInBytes)), ("imagePushedAt", .epochSeconds(image.pushedAt)),
            ("imageManifestMediaType", .string(image.imageManifestMediaType)),
            ("artifactMediaType", image.artifactMediaType.map(JSONValue.string)),
        ])
    }
}
