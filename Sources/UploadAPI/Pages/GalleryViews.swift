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
    static let galleryScanLimit = 1_000
    /// The most repositories hidden from the viewer one page passes over (each a read of its
    /// details and a policy's judgement): counted apart, so that a run of them (two thousand in a
    /// row aside) does not empty a page.
    static let galleryHiddenScanLimit = 2_000
    /// The most tags of one repository a page reads to find its newest (small records: a digest
    /// and a time), and the most a repository page shows.
    static let tagsReadPerRepository = 1_000
    static let tagsShown = 100
    /// The most images a repository page reads (each with its manifest, up to 4 MiB: read a page
    /// of ``imagesShown`` at a time, and only the newest kept, without their manifests), and shows.
    static let imagesReadPerRepository = 1_000
    static let imagesShown = 50
    /// How far back a repository page looks for its recent uploads, how many it shows, and the
    /// most entries of the (registry-wide) initiations index it reads to find them.
    static let recentUploadsWindowMilliseconds: Int64 = 7 * 86_400_000
    static let recentUploadsShown = 20
    static let recentUploadsScanLimit = 5_000

    /// `GET /gallery/?q=&after=`: a page of repositories whose names contain `q` (any case). `after`
    /// is sealed (``PageSession/sealed(_:)``): the last repository a page looked at may be one
    /// this viewer may not see.
    func registryPage(_ request: Request, _ viewer: String?) throws -> Response {
        let query = String((Self.formQuery(request)["q"] ?? "").prefix(256)).trimmingCharacters(in: .whitespaces)
        var cursor: String?
        if let token = request.uri.queryParameters["after"] {
            guard let opened = pageSession.opened(String(token)) else { throw APIError.invalidParameter("This page link is not one of this server's; start again from the first page.") }
            cursor = opened
        }
        let needle = query.lowercased()
        let registryId = settings.defaultRegistryId
        var cards: [[String: Any]] = []
        var scanned = 0, hidden = 0
        var more = true
        var position: UInt64 = 0
        try service.read { snapshot in
            scanning: while scanned < Self.galleryScanLimit && hidden < Self.galleryHiddenScanLimit {
                let page = try snapshot.repositories(in: registryId, after: cursor, limit: 500)
                for summary in page {
                    guard needle.isEmpty || summary.repositoryName.lowercased().contains(needle) else {
                        scanned += 1
                        cursor = summary.repositoryName
                        continue
                    }
                    let details = try snapshot.details(summary.repository)
                    guard mayView(summary.repository, details, viewer) else {
                        hidden += 1
                        cursor = summary.repositoryName
                        continue
                    }
                    scanned += 1
                    // A next page only when one more the viewer may see follows a full one: a
                    // link to an empty page would tell that repositories hidden from them exist.
                    if cards.count == Self.galleryPageSize { break scanning }
                    cursor = summary.repositoryName
                    cards.append(try card(summary, details, viewer, snapshot))
                }
                if page.count < 500 { more = false; break }
            }
            position = try snapshot.checkpoint()
        }
        // A full page, or a search stopped by its scan bound, may have more after it.
        var nextPath: String?
        if more, let cursor {
            nextPath = "/gallery/?" + (query.isEmpty ? "" : "q=\(Self.percentEncoded(query))&") + "after=\(pageSession.sealed(cursor))"
        }
        // No count: with the bound's, one would tell how many matching repositories are hidden.
        let scanNote = !more || cards.count == Self.galleryPageSize ? nil
            : query.isEmpty ? "This page stopped before the end of the list; the next page looks further."
            : "This page stopped before the end of the list of names containing “\(query)”; the next page looks further."
        return render("registry", title: "Repositories", viewer: viewer, [
            "query": query, "hasQuery": !query.isEmpty, "repositories": cards, "nextPath": nextPath as Any, "scanNote": scanNote as Any,
            "position": position,
        ])
    }

    /// Whether the viewer may see a repository: whoever may pull from it (``AccessPolicy``).
    func mayView(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        may("BatchGetImage", ref, details, viewer)
    }

    /// Whether the viewer may see a repository's tags, as DescribeImageTags and `tags/list` judge it.
    func mayListTags(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        may("DescribeImageTags", ref, details, viewer)
    }

    /// Whether the viewer may see a repository's images and uploads, as DescribeImages judges it.
    func mayDescribeImages(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        may("DescribeImages", ref, details, viewer)
    }

    /// Whether the viewer may see a repository's catalog data (its texts and logo), as
    /// GetRepositoryCatalogData judges it.
    func mayReadCatalog(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        may("GetRepositoryCatalogData", ref, details, viewer)
    }

    /// Whether the viewer may take `action` on `ref`: as themselves, or, for a key of another
    /// registry, an action other than a pull, as an anonymous viewer would, where anonymous
    /// viewers see pages (signing in never shows a stranger less than signing out would; a pull
    /// is a stranger's own to make or be denied, as on the registry).
    private func may(_ action: String, _ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> Bool {
        let access = registry.authority.access, anonymousSeePages = !registry.authority.privatePulls
        func may(as viewer: String?) -> Bool {
            (try? access.check(viewer, action: action, on: ref, policyText: details?.policyText, publicActions: registry.authority.galleryPublicActions)) != nil
        }
        if may(as: viewer) { return true }
        return viewer != nil && anonymousSeePages && !AccessPolicy.pullActions.contains(action) && access.isStranger(viewer, to: ref) && may(as: nil)
    }

    private func card(_ summary: RepositorySummary, _ details: RepositoryDetails?, _ viewer: String?, _ snapshot: any StoreSnapshot) throws -> [String: Any] {
        var card = catalogValues(summary.repository, details, viewer)
        card["path"] = "/gallery/repositories/" + summary.repositoryName
        guard mayListTags(summary.repository, details, viewer) else { return card }
        let newest = try newestTag(summary.repository, snapshot)
        card["latestTag"] = newest?.name as Any
        card["tagsReadNote"] = (newest?.ofFirstRead == true ? Self.tagsReadNote : nil) as Any
        // Without a tag, its images were pushed by digest only: their times would take a read of each.
        card["lastPush"] = newest.map { Self.shown($0.record.createdAt) } ?? (summary.imageCount > 0 ? "untagged pushes only" : nil) as Any
        card["showsPushes"] = true
        return card
    }

    /// What a card and a repository page show of the catalog data: its name alone to a viewer the
    /// repository's policy does not let read it.
    private func catalogValues(_ ref: RepositoryRef, _ details: RepositoryDetails?, _ viewer: String?) -> [String: Any] {
        guard mayReadCatalog(ref, details, viewer) else { return ["name": ref.repositoryName] }
        return [
            "name": ref.repositoryName,
            "description": details?.description as Any,
            "architectures": details?.architectures.joined(separator: ", ") as Any,
            "operatingSystems": details?.operatingSystems.joined(separator: ", ") as Any,
            "logoPath": details?.logoImageDigest.map { "/logos/\(ref.registryId)/\($0)/\(ref.repositoryName)" } as Any,
        ]
    }

    /// The tag the latest push set (a tag's time is its push's), among the first ``tagsReadPerRepository``.
    /// `ofFirstRead`: the repository has more tags than were read, so a later push may have set one
    /// past them (the page says so).
    private func newestTag(_ ref: RepositoryRef, _ snapshot: any StoreSnapshot) throws -> (name: String, record: TagRecord, ofFirstRead: Bool)? {
        let read = try snapshot.tags(in: ref, after: nil, limit: Self.tagsReadPerRepository + 1)
        let first = read.prefix(Self.tagsReadPerRepository)
        return first.max { ($0.record.createdAt, $0.name) < ($1.record.createdAt, $1.name) }.map { ($0.name, $0.record, read.count > first.count) }
    }

    static let tagsReadNote = "of the first \(tagsReadPerRepository) tags by name"

    /// The ``imagesShown`` newest of the first ``imagesReadPerRepository`` images (by digest),
    /// newest first, without their manifests; and how many were read.
    private func newestImages(_ ref: RepositoryRef, _ snapshot: any StoreSnapshot) throws -> (images: [ImageRecord], read: Int) {
        var newest: [ImageRecord] = [], read = 0, after: String?
        while read < Self.imagesReadPerRepository {
            let page = try snapshot.imagesWithoutManifests(in: ref, after: after, limit: min(Self.imagesShown, Self.imagesReadPerRepository - read))
            read += page.count
            newest = Array((newest + page)
                .sorted { ($0.pushedAt, $0.imageDigest) > ($1.pushedAt, $1.imageDigest) }.prefix(Self.imagesShown))
            guard page.count == Self.imagesShown, let last = page.last else { break }
            after = last.imageDigest
        }
        return (newest, read)
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
            var values = catalogValues(ref, details, viewer)
            let readsCatalog = mayReadCatalog(ref, details, viewer), describesImages = mayDescribeImages(ref, details, viewer)
            let (images, imagesRead) = describesImages ? try newestImages(ref, snapshot) : ([], 0)
            let listsTags = mayListTags(ref, details, viewer)
            let newest = listsTags ? try newestTag(ref, snapshot) : nil
            let pullReference = newest.map { ":" + $0.name } ?? images.first.map { "@" + $0.imageDigest } ?? ":latest"
            values["pullCommand"] = "docker pull \(endpoint.hostAndPort)/\(name)\(pullReference)"
            if readsCatalog {
                values["about"] = details?.aboutText.map { ["html": SafeMarkdown.html($0)] } as Any
                values["usage"] = details?.usageText.map { ["html": SafeMarkdown.html($0)] } as Any
            }
            if listsTags {
                let tags = try snapshot.tags(in: ref, after: nil, limit: Self.tagsShown + 1)
                var images = ImagesReadOnce(snapshot, ref)
                try images.readAhead(tags.prefix(Self.tagsShown).map(\.record.imageDigest))
                values["tags"] = try tags.prefix(Self.tagsShown).map { tag -> [String: Any] in
                    let image = try images.image(tag.record.imageDigest)
                    return ["name": tag.name, "digest": tag.record.imageDigest, "size": Self.byteCount(image?.imageSizeInBytes),
                            "pushedAt": Self.shown(tag.record.createdAt)]
                }
                values["hasTags"] = !tags.isEmpty
                if tags.count > Self.tagsShown { values["tagsNote"] = "The first \(Self.tagsShown) tags, in name order." }
            } else {
                values["tagsNote"] = "This repository's policy does not let you list its tags."
            }
            let shown = Array(images.prefix(Self.imagesShown))
            let tagsOfShown = listsTags ? try snapshot.tags(of: shown.map(\.imageDigest), in: ref) : shown.map { _ in [] }
            values["images"] = zip(shown, tagsOfShown).map { image, tags -> [String: Any] in
                // Never empty: an absent key would make Mustache look up the page's own `tags`.
                return ["digest": image.imageDigest, "imageTags": tags.isEmpty ? "–" : tags.joined(separator: ", "),
                        "size": Self.byteCount(image.imageSizeInBytes),
                        "pushedAt": Self.shown(image.pushedAt), "mediaType": image.imageManifestMediaType]
            }
            values["hasImages"] = !images.isEmpty
            if imagesRead > Self.imagesShown {
                let count = imagesRead == Self.imagesReadPerRepository ? "the first \(imagesRead) by digest of more" : String(imagesRead)
                values["imagesNote"] = "The \(Self.imagesShown) newest of \(count) images."
            }
            values["imagesHidden"] = !describesImages
            // Uploads in progress, and layers no image names yet, are for this registry's keys, as
            // the API's upload sessions and the audit page are: not for anyone who may pull.
            let showsUploads = describesImages && viewer != nil && !registry.authority.access.isStranger(viewer, to: ref)
            values["uploadsHidden"] = describesImages && !showsUploads
            let (uploads, complete) = showsUploads ? try recentUploads(ref, since: since, snapshot) : ([], true)
            values["uploads"] = uploads
            values["hasUploads"] = !uploads.isEmpty
            values["uploadWindow"] = "7 days"
            if !complete {
                // Read from the registry's index: a quiet repository of a busy registry may have
                // uploads older than its newest initiations, and "No uploads" would say otherwise.
                values["uploadsNote"] = uploads.isEmpty
                    ? "None of the registry's newest \(Self.recentUploadsScanLimit) initiations, the most this page looks at, is this repository's; its uploads are on the audit page."
                    : "Only the registry's newest \(Self.recentUploadsScanLimit) initiations were looked at; this repository's older uploads are on the audit page."
            }
            values["position"] = try snapshot.checkpoint()
            return values
        }
        return render("repository", title: name, viewer: viewer, values)
    }

    /// The repository's newest initiations in the window, each with its session's state now:
    /// read newest first from the initiations index, at most ``recentUploadsScanLimit`` entries.
    /// - Returns: the rows, and whether the window was read to its end (or the rows filled).
    private func recentUploads(_ ref: RepositoryRef, since: Timestamp, _ snapshot: any StoreSnapshot) throws -> (rows: [[String: Any]], complete: Bool) {
        let wanted = ref.description
        var rows: [[String: Any]] = []
        var scanned = 0
        var complete = true
        try snapshot.forEachInitiationMark(newestFirstBefore: nil) { mark in
            guard scanned < Self.recentUploadsScanLimit else { complete = false; return false }
            scanned += 1
            guard mark.recordedAt >= since else { return false }
            guard mark.repository == wanted else { return true }
            let envelope = try snapshot.indexedEvent(at: mark.position)
            guard case .uploadInitiated(let initiated) = envelope.event else { return true }
            let session = try snapshot.session(initiated.uploadId)
            rows.append([
                "initiatedAt": Self.shown(envelope.recordedAt), "uploadId": initiated.uploadId,
                "state": session.map { "\($0.state)" } ?? "unknown", "parts": session?.partCount ?? 0,
                "bytes": Self.byteCount(session?.bytesReceived), "layerDigest": session?.layerDigest as Any,
            ])
            return rows.count < Self.recentUploadsShown
        }
        return (rows, complete)
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
