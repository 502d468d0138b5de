import Foundation
import HTTPTypes
import Hummingbird
import JSONGrammar
import NIOCore
import NIOPosix
import UploadCore
import UploadService
import UploadStore

/// Manifests, tags and referrers: `/v2/<name>/manifests/<reference>`, `/v2/<name>/tags/list`,
/// `/v2/<name>/referrers/<digest>`.
extension RegistryFrontEnd {
    /// `PUT`, `GET`, `HEAD` and `DELETE` of a manifest by tag or digest.
    func manifest(_ call: Call, _ ref: RepositoryRef, reference: String) async throws -> Response {
        let request = call.request
        let isDigest = reference.contains(":")
        if isDigest {
            guard Validation.isRegistryDigest(reference) else { throw RegistryError(.digestInvalid, "'\(reference)' is not a sha256 or sha512 digest") }
        } else {
            // A push takes the spec's tags; a read or a delete any tag ECR's PutImage may have
            // stored (up to 300 characters).
            guard Validation.isImageTag(reference), request.method != .put || reference.utf8.count <= Self.longestListedTag else {
                // A read of what cannot be a tag finds nothing there (the spec's 404, which its
                // conformance suite asks with `.INVALID_MANIFEST_NAME`); a push of it is invalid.
                let why = "'\(reference)' is not a tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} (a pull or delete takes up to 300 characters, as ECR stores)"
                throw Self.readsOnly.contains(request.method) ? RegistryError(.manifestUnknown, why) : RegistryError(.manifestInvalid, why)
            }
        }
        switch request.method {
        case .put:
            guard isDigest else { return try await putManifest(call, ref, tag: reference, digest: nil) }
            return try await putManifest(call, ref, tag: nil, digest: reference, alsoTagging: try Self.tagParameters(request))
        case .get, .head:
            let image = try await service.reading { [service] snapshot -> ImageRecord? in
                _ = try Decider.existingRepository(ref.registryId, ref.repositoryName, state: snapshot, settings: service.settings)
                let digest = isDigest ? reference : try snapshot.tag(ref, reference)?.imageDigest
                return try digest.flatMap { try snapshot.image(ref, $0) }
            }
            guard let image else { throw RegistryError(.manifestUnknown, "The repository holds no manifest '\(reference)'") }
            return Self.response(.ok, ByteBuffer(string: image.imageManifest), request, headers: [
                .contentType: image.imageManifestMediaType, Self.contentDigestHeader: image.imageDigest,
            ])
        case .delete:
            var command = try BatchDeleteImage(
                repositoryName: ref.repositoryName,
                imageIds: [isDigest ? ImageIdentifier(imageDigest: reference) : ImageIdentifier(imageTag: reference)])
            command.keepsUntaggedImages = true
            let outcome = try await service.batchDeleteImage(command, call.metadata())
            if let failure = outcome.failures.first {
                // A manifest a list still names exists: deleting it is refused, not unknown. 400,
                // one of the statuses the spec gives this endpoint: 403 DENIED told clients they
                // lacked a permission.
                throw failure.failureCode == .imageReferencedByManifestList
                    ? RegistryError(.unsupported, "\(reference): \(failure.failureReason)", status: .badRequest)
                    : RegistryError(.manifestUnknown, "\(reference): \(failure.failureReason)")
            }
            return Self.empty(.accepted, request, headers: [:])
        default:
            throw Self.methodNotAllowed(allowing: [.get, .head, .put, .delete])
        }
    }

    /// The most `tag` query parameters a push by digest takes (the spec asks for at least 10).
    static let mostTagParameters = 100
    /// The most manifest bytes one push by digest with `tag` parameters records: each tag is a
    /// PutImage whose event carries the manifest, so a request's growth of the log stays bounded
    /// (ten tags of a manifest of up to 1.6 MB).
    static let mostTaggedManifestBytes = 16 << 20

    /// A push by digest's `tag` query parameters (distribution-spec 1.1.1), each once, in order;
    /// all checked before anything is written.
    static func tagParameters(_ request: Request) throws -> [String] {
        var (tags, seen) = ([String](), Set<String>())
        for tag in request.uri.queryParameters.getAll("tag").lazy.map({ String($0) }) where seen.insert(tag).inserted {
            guard tags.count < mostTagParameters else {
                throw RegistryError(.unsupported, "A push takes at most \(mostTagParameters) tag parameters", status: .uriTooLong)
            }
            guard Validation.isImageTag(tag), tag.utf8.count <= longestListedTag else {
                throw RegistryError(.manifestInvalid, "The tag parameter '\(Validation.quoted(String(tag.prefix(140))))' is not a tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
            }
            tags.append(tag)
        }
        return tags
    }

    /// PutImage with the body exactly as sent; a manifest the repository already holds (under
    /// this tag, when one is given) is answered as stored. A push by digest with `tag` parameters
    /// records it under the first, then a PutImage for each other tag (a failure part way leaves
    /// those before it recorded), and names them in `OCI-Tag`.
    private func putManifest(_ call: Call, _ ref: RepositoryRef, tag: String?, digest: String?, alsoTagging tags: [String] = []) async throws -> Response {
        let body = try await ClientBody(call.request, limit: PutImage.maximumManifestBytes).collect(upTo: PutImage.maximumManifestBytes)
        guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
            throw RegistryError(.manifestInvalid, "The manifest is not UTF-8 JSON")
        }
        guard tags.count <= 1 || tags.count * body.readableBytes <= Self.mostTaggedManifestBytes else {
            throw RegistryError(
                .manifestInvalid, "Each tag records the manifest again: \(tags.count) tags of a manifest of \(body.readableBytes) bytes pass the \(Self.mostTaggedManifestBytes) bytes one push may record; push it with fewer tags at once",
                status: .contentTooLarge)
        }
        // A media type's case carries no meaning (RFC 9110 8.3.1); the registered ones are lower case.
        let contentType = call.request.headers[.contentType].map { String($0.prefix { $0 != ";" }).trimmingCharacters(in: .whitespaces).lowercased() }
        let command = try PutImage(
            repositoryName: ref.repositoryName, imageManifest: text,
            imageManifestMediaType: contentType?.isEmpty == false ? contentType : nil, imageTag: tag ?? tags.first, imageDigest: digest, sha512Allowed: true)
        do {
            do {
                _ = try await service.putImage(command, call.metadata())
            } catch let refusal as CommandError where refusal.code == .repositoryNotFound && createsRepositoriesOnPush {
                // A repository made on push holds nothing yet. A manifest it would refuse is refused
                // as it would be there, without making it: a refused request writes nothing.
                if let refusal = command.refusalInAnEmptyRepository { throw refusal }
                try await createIfAllowed(ref, call)
                _ = try await service.putImage(command, call.metadata())
            }
        } catch let refusal as CommandError where refusal.code == .imageAlreadyExists {
            // Pushed before: nothing to record.
        }
        for tag in tags.dropFirst() {
            do { _ = try await service.putImage(try command.tagged(tag), call.metadata()) } catch let refusal as CommandError where refusal.code == .imageAlreadyExists {}
        }
        var headers: HTTPFields = [.location: "/v2/\(ref.repositoryName)/manifests/\(command.imageDigest)", Self.contentDigestHeader: command.imageDigest]
        if !tags.isEmpty { headers[Self.tagHeader] = tags.joined(separator: ", ") }
        if let subject = ManifestFacts(text)?.subject { headers[Self.subjectHeader] = subject }
        return Self.empty(.created, call.request, headers: headers)
    }

    /// `GET …/tags/list[?n=&last=]`: the repository's tags in lexical order, a page at a time,
    /// with a `Link` to the next page. Tags longer than the spec's 128 characters (ECR's PutImage
    /// takes 300) are left out, though read by name: a client refuses a list holding one (`skopeo
    /// sync` stopped at the whole repository).
    func tags(_ call: Call, _ ref: RepositoryRef) async throws -> Response {
        var wanted = Self.tagPageLimit
        if let n = call.first("n") {
            guard !n.isEmpty, n.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
                throw RegistryError(.sizeInvalid, "n must be a whole number of tags", status: .badRequest)
            }
            // More than a page asks for a page, however many digits it takes to ask.
            wanted = min(Int(n) ?? Int.max, Self.tagPageLimit)
        }
        let limit = wanted, last = call.first("last")
        let names = try await service.reading { [service] snapshot -> [String] in
            _ = try Decider.existingRepository(ref.registryId, ref.repositoryName, state: snapshot, settings: service.settings)
            guard limit > 0 else { return [] }
            var listed: [String] = [], after = last, batchSize = limit + 1
            while listed.count <= limit {
                let batch = try snapshot.tags(in: ref, after: after, limit: batchSize).map(\.name)
                listed += batch.filter { $0.utf8.count <= Self.longestListedTag }
                guard batch.count == batchSize else { break }
                after = batch.last
                batchSize = max(batchSize, Self.tagPageLimit)  // past long tags, a page's worth at a time
            }
            return listed
        }
        var headers: HTTPFields = [:]
        let page = Array(names.prefix(limit))
        if names.count > limit, let final = page.last {
            headers[Self.linkHeader] = "</v2/\(ref.repositoryName)/tags/list?n=\(limit)&last=\(final)>; rel=\"next\""
        }
        return Self.response(.ok, .object([("name", .string(ref.repositoryName)), ("tags", .array(page.map(JSONValue.string)))]), call.request, headers: headers)
    }

    /// The most tags one page lists.
    static let tagPageLimit = 1000
    /// The longest tag the distribution spec allows, and the tags list shows.
    static let longestListedTag = 128

    /// `GET …/referrers/<digest>[?artifactType=]`: an image index of the manifests whose
    /// `subject` is `digest` (empty when there are none, or no such repository),
    /// ``referrersPageLimit`` of them at a time (fewer when their manifests pass
    /// ``referrersPageBytes``) in digest order, with a `Link` to the next page (`last=`, the
    /// digest the page read to).
    /// - Parameter hidden: the repository is one the caller may not know of: it lists none, as
    ///   one that does not exist.
    func referrers(_ call: Call, _ ref: RepositoryRef, digest: String, hidden: Bool = false) async throws -> Response {
        guard Validation.isRegistryDigest(digest) else { throw RegistryError(.digestInvalid, "'\(digest)' is not a sha256 or sha512 digest") }
        let filter = call.first("artifactType").flatMap { $0.isEmpty ? nil : $0 }  // empty: no filter, as distribution reads it
        let last = call.first("last")
        if let last, !Validation.isRegistryDigest(last) { throw RegistryError(.digestInvalid, "last: '\(last)' is not a sha256 or sha512 digest") }
        let service = self.service
        // No existence check: a registry that serves referrers must never answer them 404 (the
        // spec's words), so a repository that does not exist, or exists no more, lists none.
        // The referrers index names them; their manifests are read a page per read snapshot (no
        // long read transaction), as each may hold 4 MiB. On a thread of their own that admits a
        // few lists at a time (a burst is refused with TOOMANYREQUESTS), so that anonymous pulls of
        // a much-referred subject take neither the cooperative pool nor NIO's thread pool, which
        // every blob's file work runs on.
        let scan = { @Sendable () throws -> (found: [JSONValue], more: String?) in
            if hidden { return ([], nil) }
            let listed = try service.read { try $0.referrers(of: digest, in: ref, after: last, limit: Self.referrersPageLimit + 1) }
            let referrers = Array(listed.prefix(Self.referrersPageLimit))
            var found: [JSONValue] = []
            var bytes = 0  // the listed descriptors', as written
            var read = 0  // every manifest's read, listed or filtered out
            var examined: String?
            for start in stride(from: 0, to: referrers.count, by: Self.referrersPageImages) {
                if examined != nil, read >= Self.referrersReadBytes { return (found, examined) }
                let names = referrers[start..<min(start + Self.referrersPageImages, referrers.count)]
                // One deleted since the list was read is left out.
                let page = try service.read { snapshot in Array(zip(names, try snapshot.images(ref, Array(names)))) }
                for (name, image) in page {
                    // A filter that lists few of many large referrers still reads each: the page
                    // ends, linked to the next, once it has read its budget.
                    if examined != nil, read >= Self.referrersReadBytes { return (found, examined) }
                    read += image?.imageManifest.utf8.count ?? 0
                    if let image, let facts = ManifestFacts(image.imageManifest) {
                        // An empty or missing artifactType is the config's media type (the spec's rule).
                        let artifactType = facts.artifactType.flatMap { $0.isEmpty ? nil : $0 } ?? facts.configMediaType
                        if filter == nil || artifactType == filter {
                            let size = image.imageManifest.utf8.count
                            func descriptor(annotated: Bool) -> JSONValue {
                                .object(sorting: [
                                    ("mediaType", .string(image.imageManifestMediaType)), ("digest", .string(image.imageDigest)),
                                    ("size", .uint(UInt64(size))), ("artifactType", artifactType.map(JSONValue.string)),
                                    ("annotations", !annotated || facts.annotations.isEmpty ? nil : .object(facts.annotations.map { ($0.key, JSONValue.string($0.value)) })),
                                ])
                            }
                            // Sized as written: escapes make a manifest's annotations up to six
                            // times their stored bytes (DEL as `\u007f`). One that alone passes the
                            // budget is listed without them (its manifest holds them).
                            var listed = descriptor(annotated: true)
                            var written = listed.utf8.count
                            if written > Self.referrersPageBytes {
                                listed = descriptor(annotated: false)
                                written = listed.utf8.count
                            }
                            // The page ends before the answer passes its budget; the next starts here.
                            if !found.isEmpty, bytes + written > Self.referrersPageBytes { return (found, examined) }
                            bytes += written
                            found.append(listed)
                        }
                    }
                    examined = name
                }
            }
            return (found, listed.count > referrers.count ? referrers.last : nil)
        }
        let (descriptors, more): ([JSONValue], String?)
        // Anonymous lists take all but the places kept for callers with a key: anyone can send
        // them in any number, and would otherwise keep the registry's own pushers (cosign, oras
        // attaching signatures) from theirs.
        let reserved = call.principal == nil ? ECRPublicService.placesForSignedInViewers : 0
        do { (descriptors, more) = try await Self.referrersThread.run(keepingFree: reserved, scan) } catch is ECRPublicService.AdmittingThread.Busy {
            throw RegistryError(.tooManyRequests, "too many referrers lists are being read at once; try again in a moment")
        }
        var headers: HTTPFields = [:]
        if filter != nil { headers[Self.filtersAppliedHeader] = "artifactType" }
        if let more {
            // The filter goes on in the next page's query, its '+' and '/' escaped (a '+' would read as a space).
            let type = filter.flatMap { $0.addingPercentEncoding(withAllowedCharacters: Self.queryValueCharacters) }.map { "&artifactType=\($0)" } ?? ""
            headers[Self.linkHeader] = "</v2/\(ref.repositoryName)/referrers/\(digest)?last=\(more)\(type)>; rel=\"next\""
        }
        let index: JSONValue = .object([
            ("schemaVersion", .int(2)), ("mediaType", .string(Self.imageIndexType)), ("manifests", .array(descriptors)),
        ])
        return Self.response(.ok, index, call.request, headers: headers, contentType: Self.imageIndexType)
    }

    /// Referrers' manifests read per snapshot: at 4 MiB a manifest, 64 MiB at most.
    static let referrersPageImages = 16
    /// The most referrers one answer lists, so that one request reads a bounded number of manifests.
    static let referrersPageLimit = 1000
    /// The most bytes of descriptors one answer lists, as written (their annotations come from the
    /// manifests): past it the page ends, linked to the next, so that a subject's many large
    /// referrers never make one answer of gigabytes; a descriptor that alone passes it is listed
    /// without its annotations, so that no answer holds much more while a slow reader takes it.
    static let referrersPageBytes = 4 << 20
    /// The most manifest bytes one answer parses, listed or not (an `artifactType` filter leaves
    /// some out): past it the page ends, linked to the next, however few it lists. (Manifests are
    /// read ``referrersPageImages`` to a snapshot: it reads at most one such batch more.)
    static let referrersReadBytes = 16 << 20
    /// What a query value keeps unescaped: RFC 3986's unreserved characters.
    static let queryValueCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// Where referrers are looked for; past 16 lists waiting or being read (12 anonymous ones), one is refused.
    static let referrersThread = ECRPublicService.AdmittingThread(limit: 16)

    static let imageIndexType = "application/vnd.oci.image.index.v1+json"
    static let linkHeader = HTTPField.Name("Link")!
}

/// What the registry reads of a stored manifest beyond what PutImage keeps: its `subject`,
/// `artifactType`, config media type and annotations (sorted by key).
struct ManifestFacts {
    var subject: String?
    var artifactType: String?
    var configMediaType: String?
    var annotations: [(key: String, value: String)] = []

    init?(_ manifest: String) {
        // As the projector reads it (``Manifest``), so that `OCI-Subject` names only what the referrers API lists.
        guard let object = try? ParsedJSON(parsing: Array(manifest.utf8), grammar: .foundationsLegacy), object.isObject else { return nil }
        subject = object[member: "subject"]?[member: "digest"]?.string.flatMap { Validation.isRegistryDigest($0) ? $0 : nil }
        artifactType = object[member: "artifactType"]?.string
        configMediaType = object[member: "config"]?[member: "mediaType"]?.string
        if let map = object[member: "annotations"] {
            annotations = map.uniqueMembers.compactMap { member in member.value.string.map { (member.name, $0) } }
                .sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        }
    }
}
