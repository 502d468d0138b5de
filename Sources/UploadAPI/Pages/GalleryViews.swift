import Foundation
import Hummingbird
import UploadCore
import UploadService
import UploadStore

/// The registry page and the repository pages: what they read, and the bounds on it, so that no
/// page costs more than a fixed number of reads whatever the registry holds.
extension ECRPublicService {
    /// Repositories on a page of the gallery.
    static let galleryPageSize = 24
    /// The most repositories one gallery page looks at to fill itself with matches for a search.
    static let galleryScanLimit = 5_000
    /// The most images of one repository a page reads to find its newest push.
    static let imagesReadPerRepository = 1_000
    /// How far back a repository page looks for its recent uploads, and how many it shows.
    static let recentUploadsWindowMilliseconds: Int64 = 7 * 86_400_000
    static let recentUploadsShown = 20

    /// `GET /gallery/?q=&after=`: a page of repositories whose names contain `q` (any case).
    func registryPage(_ request: Request, _ viewer: String?) throws -> Response {
        let query = String((request.uri.queryParameters["q"] ?? "").prefix(256)).trimmingCharacters(in: .whitespaces)
        let after = request.uri.queryParameters["after"].map(String.init)
        let needle = query.lowercased()
        let registryId = settings.defaultRegistryId
        var cards: [[String: Any]] = []
        var cursor = after
        var scanned = 0
        var more = true
        try service.read { snapshot in
            scanning: while cards.count < Self.galleryPageSize, scanned < Self.galleryScanLimit {
                let page = try snapshot.repositories(in: registryId, after: cursor, limit: 500)
                for summary in page {
                    scanned += 1
                    cursor = summary.repositoryName
                    guard needle.isEmpty || summary.repositoryName.lowercased().contains(needle) else { continue }
                    let details = try snapshot.details(summary.repository)
                    guard mayView(summary.repository, details, viewer) else { continue }
                    cards.append(try card(summary, details, snapshot))
                    if cards.count == Self.galleryPageSize { break scanning }
                }
                if page.count < 500 { more = false; break }
            }
        }
        // A full page, or a search stopped by its scan bound, may have more after it.
        var nextPath: String?
        if more, let cursor {
            nextPath = "/gallery/?" + (query.isEmpty ? "" : "q=\(Self.percentEncoded(query))&") + "after=\(Self.percentEncoded(cursor))"
        }
        let scanNote = more && cards.count < Self.galleryPageSize
            ? "This page looked through \(scanned) repositories for names containing “\(query)”; the next page looks further." : nil
        return render("registry", title: "Repositories", viewer: viewer, [
            "query": query, "hasQuery": !query.isEmpty, "repositories": cards, "nextPath": nextPath as Any, "scanNote": scanNote as Any,
        ])
    }

    /// Whether the viewer may see a repository: whoever may pull from it (``AccessPolicy``).
    func mayView(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        (try? registry.authority.access.check(
            viewer, action: "BatchGetImage", on: ref, policyText: details?.policyText, publicPulls: !registry.authority.privatePulls)) != nil
    }

    private func card(_ summary: RepositorySummary, _ details: RepositoryDetails?, _ snapshot: any StoreSnapshot) throws -> [String: Any] {
        let newest = try newestImage(summary.repository, snapshot)
        var card = catalogValues(summary.repository, details)
        card["path"] = "/gallery/repositories/" + summary.repositoryName
        card["latestTag"] = newest?.tags.first as Any
        card["lastPush"] = newest.map { Self.shown($0.pushedAt) } as Any
        return card
    }

    /// What a card and a repository page show of the catalog data.
    private func catalogValues(_ ref: RepositoryRef, _ details: RepositoryDetails?) -> [String: Any] {
        [
            "name": ref.repositoryName,
            "description": details?.description as Any,
            "architectures": details.flatMap { $0.architectures.isEmpty ? nil : $0.architectures.joined(separator: ", ") } as Any,
            "operatingSystems": details.flatMap { $0.operatingSystems.isEmpty ? nil : $0.operatingSystems.joined(separator: ", ") } as Any,
            "logoPath": details?.logoImageDigest.map { "/logos/\(ref.registryId)/\($0)/\(ref.repositoryName)" } as Any,
        ]
    }

    /// The repository's most recently pushed image, among the first ``imagesReadPerRepository``.
    private func newestImage(_ ref: RepositoryRef, _ snapshot: any StoreSnapshot) throws -> ImageRecord? {
        try snapshot.images(in: ref, after: nil, limit: Self.imagesReadPerRepository).max { ($0.pushedAt, $0.imageDigest) < ($1.pushedAt, $1.imageDigest) }
    }

    /// `GET /gallery/repositories/<name>`.
    func repositoryPage(_ name: String, _ viewer: String?) throws -> Response {
        let ref = RepositoryRef(registryId: settings.defaultRegistryId, repositoryName: name)
        let since = Timestamp(millisecondsSinceEpoch: store.clock.now().millisecondsSinceEpoch - Self.recentUploadsWindowMilliseconds)
        let values: [String: Any] = try service.read { snapshot in
            let details = try snapshot.details(ref)
            guard (try? Validation.repositoryName(name)) != nil, try snapshot.repository(ref) != nil, mayView(ref, details, viewer) else {
                // A repository the viewer may not see is reported as missing, as the registry does.
                throw PageNotFound(message: "There is no repository named “\(name.prefix(256))” that you may see.")
            }
            var values = catalogValues(ref, details)
            let allImages = try snapshot.images(in: ref, after: nil, limit: Self.imagesReadPerRepository)
            let images = allImages.sorted { ($0.pushedAt, $0.imageDigest) > ($1.pushedAt, $1.imageDigest) }
            let tags = try snapshot.tags(in: ref, after: nil, limit: 100).map { tag -> [String: Any] in
                let image = try snapshot.image(ref, tag.record.imageDigest)
                return ["name": tag.name, "digest": tag.record.imageDigest, "size": Self.byteCount(image?.imageSizeInBytes),
                        "pushedAt": Self.shown(image?.pushedAt ?? tag.record.createdAt)]
            }
            let pullReference = images.first(where: { !$0.tags.isEmpty }).map { ":" + $0.tags[0] } ?? images.first.map { "@" + $0.imageDigest } ?? ":latest"
            values["pullCommand"] = "docker pull \(endpoint.hostAndPort)/\(name)\(pullReference)"
            values["about"] = details?.aboutText.map { ["html": SafeMarkdown.html($0)] } as Any
            values["usage"] = details?.usageText.map { ["html": SafeMarkdown.html($0)] } as Any
            values["tags"] = tags
            values["hasTags"] = !tags.isEmpty
            values["images"] = images.prefix(50).map { image -> [String: Any] in
                ["digest": image.imageDigest, "tags": image.tags.joined(separator: ", "), "size": Self.byteCount(image.imageSizeInBytes),
                 "pushedAt": Self.shown(image.pushedAt), "mediaType": image.imageManifestMediaType]
            }
            values["hasImages"] = !images.isEmpty
            if images.count > 50 {
                let count = images.count == Self.imagesReadPerRepository ? "at least \(images.count)" : String(images.count)
                values["imagesNote"] = "The 50 newest of \(count) images."
            }
            let uploads = try recentUploads(ref, since: since, snapshot)
            values["uploads"] = uploads
            values["hasUploads"] = !uploads.isEmpty
            values["uploadWindow"] = "7 days"
            return values
        }
        return render("repository", title: name, viewer: viewer, values)
    }

    /// The repository's newest initiations in the window, each with its session's state now.
    /// - Complexity: reads the auditors' time index over the window (every repository's marks).
    private func recentUploads(_ ref: RepositoryRef, since: Timestamp, _ snapshot: any StoreSnapshot) throws -> [[String: Any]] {
        let wanted = ref.description
        let marks = try snapshot.initiationMarks(since: since, until: nil).filter { $0.repository == wanted }.suffix(Self.recentUploadsShown)
        return try marks.reversed().compactMap { mark -> [String: Any]? in
            guard let envelope = try snapshot.events(after: mark.position - 1, limit: 1).first,
                  case .uploadInitiated(let initiated) = envelope.event else { return nil }
            let session = try snapshot.session(initiated.uploadId)
            return [
                "initiatedAt": Self.shown(envelope.recordedAt), "uploadId": initiated.uploadId,
                "state": session.map { "\($0.state)" } ?? "unknown", "parts": session?.partCount ?? 0,
                "bytes": Self.byteCount(session?.bytesReceived), "layerDigest": session?.layerDigest as Any,
            ]
        }
    }

    /// A size as people read it: 1.5 MiB.
    static func byteCount(_ bytes: UInt64?) -> String {
        guard let bytes else { return "–" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
