/// Folds events into the projection tables. A pure function of the events: the same log gives
/// the same table bytes, whether applied live in the writer's transaction or rebuilt by replay.
public enum Projector {
    /// The version of the projection tables. Bump it when a record, what the projector puts in the
    /// state, or the store's key layout (`UploadStore/Projections/`) changes; a store whose tables
    /// carry another version rebuilds them from the log on open.
    public static let version: UInt32 = 12

    /// Applies one event. Throws ``ProjectionError`` when the event contradicts the tables, which
    /// a log written by the decider never does: it means the log or the tables were altered.
    public static func apply(_ envelope: EventEnvelope, to tables: inout some MutableProjectionState) throws {
        try apply(ProjectedEvent(envelope), to: &tables)
    }

    /// Applies what the projections read of one event (replay decodes only that).
    public static func apply(_ envelope: ProjectedEvent, to tables: inout some MutableProjectionState) throws {
        // Each event of an SDK call is marked by position; the store folds the log's recent stretch
        // of marks into the map that answers retries.
        if let mark = envelope.invocation { try tables.put(mark, at: envelope.position) }
        switch envelope.event {
        case .repositoryCreated(let e):
            guard try tables.repository(e.repository) == nil else {
                throw ProjectionError(envelope, "repository \(e.repository) already exists")
            }
            try tables.put(RepositorySummary(created: e, at: envelope))

        case .repositoryDeleted(let e):
            guard let repository = try tables.repository(e.repository) else {
                throw ProjectionError(envelope, "repository \(e.repository) does not exist")
            }
            guard repository.activeSessions == 0, repository.imageCount == 0 else {
                throw ProjectionError(envelope, "repository \(e.repository) still has active uploads or images")
            }
            try tables.removeRepository(e.repository)
            try tables.removeLayers(in: e.repository)
            try tables.removeDetails(of: e.repository)

        case .uploadInitiated(let e):
            guard try tables.session(e.uploadId) == nil else {
                throw ProjectionError(envelope, "upload \(e.uploadId) already exists")
            }
            guard var repository = try tables.repository(e.repository) else {
                throw ProjectionError(envelope, "repository \(e.repository) does not exist")
            }
            repository.uploadsInitiated += 1
            repository.activeSessions += 1
            repository.touch(envelope)
            try tables.put(repository)
            try tables.put(UploadSession(started: e, at: envelope))
            try tables.setUpload(e.uploadId, in: e.repository, active: true)
            try tables.recordInitiation(in: e.repository, at: envelope.recordedAt, position: envelope.position)

        case .uploadExpired(let e):
            try endUpload(e.uploadId, in: e.repository, as: .expired, envelope, &tables)

        case .uploadAborted(let e):
            try endUpload(e.uploadId, in: e.repository, as: .aborted, envelope, &tables)

        case .layerPartUploaded(let e):
            var (session, repository) = try activeSession(e.uploadId, e.repository, envelope, tables)
            guard e.partFirstByte == session.bytesReceived else {
                throw ProjectionError(envelope, "part starts at \(e.partFirstByte) but upload \(e.uploadId) has \(session.bytesReceived) bytes")
            }
            if let previous = session.lastPart, previous.length < UploadSession.minimumPartBytes {
                session.hasSmallNonFinalPart = true
            }
            session.lastPart = .init(firstByte: e.partFirstByte, lastByte: e.partLastByte, digest: e.partDigest)
            session.partCount += 1
            session.bytesReceived = e.partLastByte + 1
            session.touch(envelope)
            repository.touch(envelope)
            try tables.put(session)
            try tables.put(repository)

        case .layerUploadCompleted(let e):
            guard try tables.layer(e.repository, e.layerDigest) == nil else {
                throw ProjectionError(envelope, "layer \(e.layerDigest) already exists in \(e.repository)")
            }
            try endUpload(e.uploadId, in: e.repository, as: .completed, envelope, &tables) { session, repository in
                session.layerDigest = e.layerDigest
                repository.layerCount += 1
            }
            let layer = LayerRecord(layerDigest: e.layerDigest, layerSize: e.layerSize, uploadId: e.uploadId, completedAt: envelope.recordedAt)
            try tables.put(layer, in: e.repository)

        case .layerMounted(let e):
            var repository = try existingRepository(e.repository, envelope, tables)
            guard try tables.layer(e.repository, e.layerDigest) == nil else {
                throw ProjectionError(envelope, "layer \(e.layerDigest) already exists in \(e.repository)")
            }
            repository.layerCount += 1
            repository.touch(envelope)
            try tables.put(repository)
            // A mounted layer came from no upload of its own.
            try tables.put(LayerRecord(layerDigest: e.layerDigest, layerSize: e.layerSize, uploadId: "", completedAt: envelope.recordedAt), in: e.repository)

        case .imagePushed(let e):
            var repository = try existingRepository(e.repository, envelope, tables)
            // A pushed image already stored changes only in its tag: its record stays as it is.
            let isNew = try tables.image(e.repository, e.imageDigest) == nil
            if isNew {
                repository.imageCount += 1
                try tables.put(ImageRecord(pushed: e), in: e.repository)
            }
            if let tag = e.imageTag {
                let previous = try tables.tag(e.repository, tag)
                if previous?.imageDigest != e.imageDigest {
                    if let previous { try tables.removeTag(tag, of: previous.imageDigest, in: e.repository) }
                    try tables.put(TagRecord(imageDigest: e.imageDigest, createdAt: e.pushedAt), named: tag, in: e.repository)
                }
            }
            repository.touch(envelope)
            try tables.put(repository)
            if isNew { try noteReferences(of: e, in: &tables) }

        case .imageUntagged(let e):
            var repository = try existingRepository(e.repository, envelope, tables)
            guard try tables.image(e.repository, e.imageDigest) != nil, try tables.tag(e.repository, e.imageTag)?.imageDigest == e.imageDigest else {
                throw ProjectionError(envelope, "image \(e.imageDigest) has no tag \(e.imageTag)")
            }
            repository.touch(envelope)
            try tables.put(repository)
            try tables.removeTag(e.imageTag, of: e.imageDigest, in: e.repository)

        case .imageDeleted(let e):
            var repository = try existingRepository(e.repository, envelope, tables)
            guard let image = try tables.image(e.repository, e.imageDigest), repository.imageCount > 0 else {
                throw ProjectionError(envelope, "image \(e.imageDigest) does not exist in \(e.repository)")
            }
            for tag in try tables.tags(of: e.imageDigest, in: e.repository) { try tables.removeTag(tag, of: e.imageDigest, in: e.repository) }
            try dropReferences(of: image, in: e.repository, &tables)
            repository.imageCount -= 1
            repository.touch(envelope)
            try tables.put(repository)
            try tables.removeImage(e.imageDigest, in: e.repository)

        case .repositoryCatalogDataPut, .repositoryTagged, .repositoryUntagged, .registryCatalogDataPut, .repositoryPolicySet,
             .repositoryPolicyDeleted:
            try applyCatalog(envelope, to: &tables)

        case .callAnswered:
            break  // what a call answered that no other event holds: only its invocation mark (above)
        }
    }

    /// Catalog data, tags, policies and the registry's catalog: records of their own, which no upload touches.
    private static func applyCatalog(_ envelope: ProjectedEvent, to tables: inout some MutableProjectionState) throws {
        switch envelope.event {
        case .repositoryCatalogDataPut(let e):
            var details = try existingDetails(e.repository, envelope, tables)
            details.setCatalog(e)
            try tables.put(details, of: e.repository)
        case .repositoryTagged(let e):
            var details = try existingDetails(e.repository, envelope, tables)
            details.put(tags: Array(zip(e.tagKeys, e.tagValues)))
            try tables.put(details, of: e.repository)
        case .repositoryUntagged(let e):
            var details = try existingDetails(e.repository, envelope, tables)
            for key in e.tagKeys where details.tag(key) == nil {
                throw ProjectionError(envelope, "repository \(e.repository) has no tag \(key)")
            }
            details.remove(tagKeys: e.tagKeys)
            try tables.put(details, of: e.repository)
        case .registryCatalogDataPut(let e):
            try tables.put(RegistryCatalog(displayName: e.displayName), of: e.registryId)
        case .repositoryPolicySet(let e):
            var details = try existingDetails(e.repository, envelope, tables)
            details.policyText = e.policyText
            try tables.put(details, of: e.repository)
        case .repositoryPolicyDeleted(let e):
            var details = try existingDetails(e.repository, envelope, tables)
            guard details.policyText != nil else { throw ProjectionError(envelope, "repository \(e.repository) has no policy") }
            details.policyText = nil
            try tables.put(details, of: e.repository)
        default:
            preconditionFailure("not a catalog event: \(envelope.event.type.name)")
        }
    }

    /// The details of a repository that exists (empty when it has none yet).
    private static func existingDetails(_ ref: RepositoryRef, _ envelope: ProjectedEvent, _ tables: some ProjectionState) throws -> RepositoryDetails {
        _ = try existingRepository(ref, envelope, tables)
        return try tables.details(ref) ?? RepositoryDetails()
    }

    /// What a new manifest names: each blob it names takes the media type the manifest gives it
    /// (BatchCheckLayerAvailability's `mediaType`), each digest an index lists notes the index, and
    /// its subject (whether the repository holds it or not, as the distribution spec allows) lists
    /// it among its referrers. A manifest that does not parse (none the decider accepts) names nothing.
    private static func noteReferences(of e: ImagePushed, in tables: inout some MutableProjectionState) throws {
        guard let manifest = try? Manifest(parsing: Array(e.imageManifest.utf8), given: e.imageManifestMediaType) else { return }
        if let subject = manifest.subject { try tables.setReferrer(e.imageDigest, of: subject, in: e.repository, present: true) }
        for blob in manifest.blobs {
            guard var layer = try tables.layer(e.repository, blob.digest),
                  !(layer.mediaType.map { $0.sameBytes(as: blob.mediaType) } ?? false) else { continue }
            layer.mediaType = blob.mediaType
            try tables.put(layer, in: e.repository)
        }
        for child in manifest.images { try tables.setManifestList(e.imageDigest, naming: child.digest, in: e.repository, present: true) }
    }

    /// A deleted manifest is no longer a referrer of its subject, and a deleted manifest list no
    /// longer names the digests it lists. (Its entries are kept until then even for an image
    /// deleted first, which logs from before the refusal of ImageReferencedByManifestList hold:
    /// they say what the lists name, and an image's delete reads none of them.)
    private static func dropReferences(of deleted: ImageRecord, in ref: RepositoryRef, _ tables: inout some MutableProjectionState) throws {
        // Only a list, or a manifest whose text can name a subject (as written, or escaped with
        // `\u`), is parsed: a forced delete of a large repository parses few of its manifests.
        let text = deleted.imageManifest.utf8
        guard Manifest.indexTypes.contains(deleted.imageManifestMediaType) || text.contains("subject".utf8) || text.contains("\\u".utf8),
              let manifest = try? Manifest(parsing: Array(text), given: deleted.imageManifestMediaType) else { return }
        if let subject = manifest.subject { try tables.setReferrer(deleted.imageDigest, of: subject, in: ref, present: false) }
        for child in manifest.images { try tables.setManifestList(deleted.imageDigest, naming: child.digest, in: ref, present: false) }
    }

    /// Ends an active upload in `state`: the session and its repository's count change, and the
    /// upload leaves the repository's active index. `also` adds what the ending event brings.
    private static func endUpload(
        _ uploadId: String, in ref: RepositoryRef, as state: UploadSession.State, _ envelope: ProjectedEvent,
        _ tables: inout some MutableProjectionState, also: (inout UploadSession, inout RepositorySummary) -> Void = { _, _ in }
    ) throws {
        var (session, repository) = try activeSession(uploadId, ref, envelope, tables)
        guard repository.activeSessions > 0 else {
            throw ProjectionError(envelope, "repository \(ref) counts no active upload")
        }
        session.state = state
        session.touch(envelope)
        repository.activeSessions -= 1
        repository.touch(envelope)
        also(&session, &repository)
        try tables.put(session)
        try tables.put(repository)
        try tables.setUpload(uploadId, in: ref, active: false)
    }

    private static func existingRepository(
        _ ref: RepositoryRef, _ envelope: ProjectedEvent, _ tables: some ProjectionState
    ) throws -> RepositorySummary {
        guard let repository = try tables.repository(ref) else {
            throw ProjectionError(envelope, "repository \(ref) does not exist")
        }
        return repository
    }

    private static func activeSession(
        _ uploadId: String, _ ref: RepositoryRef, _ envelope: ProjectedEvent, _ tables: some ProjectionState
    ) throws -> (UploadSession, RepositorySummary) {
        guard let session = try tables.session(uploadId), session.state == .active, session.repository == ref else {
            throw ProjectionError(envelope, "upload \(uploadId) is not active in \(ref)")
        }
        return (session, try existingRepository(ref, envelope, tables))
    }
}

extension UploadSession {
    fileprivate mutating func touch(_ envelope: ProjectedEvent) {
        lastActivityAt = envelope.recordedAt
        lastPosition = envelope.position
    }
}

extension RepositorySummary {
    fileprivate mutating func touch(_ envelope: ProjectedEvent) {
        lastActivityAt = envelope.recordedAt
        lastPosition = envelope.position
    }
}

/// An event that cannot follow the state before it.
public struct ProjectionError: Error, CustomStringConvertible, Sendable {
    public let position: UInt64
    public let reason: String

    init(_ envelope: ProjectedEvent, _ reason: String) {
        self.init(position: envelope.position, reason)
    }

    /// For a fold of the store's own (replay's flat state), which must refuse what ``Projector`` refuses, in the same words.
    package init(position: UInt64, _ reason: String) {
        self.position = position
        self.reason = reason
    }

    public var description: String { "event at position \(position) (\(reason))" }
}
