/// Decisions for the parts and completion of a layer upload.
enum LayerDecisions {
    static func uploadPart(_ c: UploadLayerPart, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let (ref, session) = try activeSession(c.registryId, c.repositoryName, c.uploadId, state: state, settings: settings)
        // The last accepted part sent again is answered as before and changes nothing (`decide`
        // records CallAnswered for a call that sent an invocation id).
        if let last = session.lastPart, last.firstByte == c.partFirstByte, last.lastByte == c.partLastByte, last.digest == c.partDigest {
            return Decision([])
        }
        func refuse(_ message: String) -> CommandError {
            CommandError(.invalidLayerPart, message, layerPart: .init(
                registryId: ref.registryId, repositoryName: ref.repositoryName, uploadId: c.uploadId,
                lastValidByteReceived: session.bytesReceived == 0 ? 0 : session.bytesReceived - 1))
        }
        guard c.partLastByte >= c.partFirstByte else {
            throw refuse("partLastByte (\(c.partLastByte)) is before partFirstByte (\(c.partFirstByte)); both are inclusive offsets")
        }
        guard c.partFirstByte == session.bytesReceived else {
            throw refuse("The first byte \(c.partFirstByte) isn't consecutive to the last byte of the previous part: the upload has \(session.bytesReceived) bytes, so the next part must start at byte \(session.bytesReceived)")
        }
        let rangeLength = c.partLastByte - c.partFirstByte + 1
        guard c.partLength == rangeLength else {
            throw refuse("layerPartBlob holds \(c.partLength) bytes but the range \(c.partFirstByte)-\(c.partLastByte) covers \(rangeLength)")
        }
        guard c.rules == .registry || c.partLength <= UploadLayerPart.maximumPartBytes else {
            throw refuse("The part holds \(c.partLength) bytes; a part may hold at most \(UploadLayerPart.maximumPartBytes)")
        }
        guard c.rules == .registry || session.partCount < settings.maximumParts else {
            throw CommandError(.limitExceeded, "The upload with id '\(c.uploadId)' already has \(session.partCount) parts, the most one upload may have")
        }
        if c.rules == .registry, let why = settings.refusesAnotherChunk(after: session.partCount) { throw refuse(why) }
        guard c.staged else { throw changed(c.uploadId) }
        return Decision([.layerPartUploaded(LayerPartUploaded(
            uploadId: c.uploadId, registryId: ref.registryId, repositoryName: ref.repositoryName,
            partFirstByte: c.partFirstByte, partLastByte: c.partLastByte, partDigest: c.partDigest))])
    }

    static func complete(_ c: CompleteLayerUpload, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let (ref, session) = try activeSession(c.registryId, c.repositoryName, c.uploadId, state: state, settings: settings)
        if c.rules == .ecrPublic {
            guard session.partCount > 0 else {
                throw CommandError(.emptyUpload, "The upload with id '\(c.uploadId)' doesn't contain any layer parts")
            }
            guard !session.hasSmallNonFinalPart else {
                throw CommandError(.layerPartTooSmall, "All layer parts except the last part should be at least 5MB (\(UploadSession.minimumPartBytes) bytes)")
            }
        }
        guard let staged = c.staged, staged.size == session.bytesReceived else { throw changed(c.uploadId) }
        guard c.names(staged.digest) else { throw CommandError.layerDigestMismatch(calculated: staged.digest) }
        guard try state.layer(ref, staged.digest) == nil else {
            // A registry client pushes a blob the repository holds as if it were new; its upload
            // ends as it asked, and the layer stays as it was.
            if c.rules == .registry {
                return Decision([.uploadAborted(UploadAborted(
                    uploadId: c.uploadId, registryId: ref.registryId, repositoryName: ref.repositoryName, reason: .layerAlreadyExists))])
            }
            throw CommandError(.layerAlreadyExists, "The layer with digest '\(staged.digest)' already exists in the repository with name '\(ref.repositoryName)' in the registry with id '\(ref.registryId)'")
        }
        return Decision([.layerUploadCompleted(LayerUploadCompleted(
            uploadId: c.uploadId, registryId: ref.registryId, repositoryName: ref.repositoryName,
            layerDigest: staged.digest, layerSize: staged.size))])
    }

    static func cancel(_ c: CancelLayerUpload, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = c.upload.repository
        _ = try activeSession(ref.registryId, ref.repositoryName, c.upload.uploadId, state: state, settings: settings)
        return Decision([.uploadAborted(UploadAborted(
            uploadId: c.upload.uploadId, registryId: ref.registryId, repositoryName: ref.repositoryName, reason: .cancelled))])
    }

    /// A mount records nothing when the repository already holds the layer, and is refused
    /// (`LayersNotFoundException`) when its source does not hold it: the client then uploads it.
    static func mount(_ c: MountLayer, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = try Decider.existingRepository(c.repository.registryId, c.repository.repositoryName, state: state, settings: settings)
        if try state.layer(ref, c.layerDigest) != nil { return Decision([]) }
        let size: UInt64
        var from: String?
        switch c.source {
        case .repository(let name):
            let source = RepositoryRef(registryId: ref.registryId, repositoryName: name)
            guard try state.repository(source) != nil, let layer = try state.layer(source, c.layerDigest) else {
                throw CommandError(.layersNotFound, "The layer \(c.layerDigest) is not in the repository with name '\(name)'")
            }
            (size, from) = (layer.layerSize, name)
        case .blobStore(let blobSize):
            size = blobSize
        }
        return Decision([.layerMounted(LayerMounted(
            registryId: ref.registryId, repositoryName: ref.repositoryName, layerDigest: c.layerDigest, layerSize: size,
            fromRepositoryName: from))])
    }

    /// Every active upload idle for at least `idleMilliseconds` at `now`, in the state's order.
    static func expire(_ c: ExpireIdleUploads, state: some ProjectionState, now: Timestamp) throws -> Decision {
        var events: [Event] = []
        for uploadId in try state.allActiveUploads() where !c.sparing.contains(uploadId) {
            guard let session = try state.session(uploadId), session.state == .active,
                  now.millisecondsSinceEpoch - session.lastActivityAt.millisecondsSinceEpoch >= c.idleMilliseconds else { continue }
            events.append(.uploadExpired(UploadExpired(
                uploadId: uploadId, registryId: session.registryId, repositoryName: session.repositoryName,
                lastActivityAt: session.lastActivityAt)))
            if events.count == c.limit { break }
        }
        return Decision(events)
    }

    /// The refusal of a command whose caller staged (or did not stage) bytes for a state that changed
    /// before the command was decided: the upload moved on under it.
    private static func changed(_ uploadId: String) -> CommandError {
        CommandError(.server, "The upload with id '\(uploadId)' changed while the request was being handled; retry the request")
    }

    /// The repository and the upload session, which must be active and belong to it.
    private static func activeSession(
        _ registryId: String?, _ repositoryName: String, _ uploadId: String, state: some ProjectionState, settings: DecisionSettings
    ) throws -> (RepositoryRef, UploadSession) {
        let ref = try Decider.existingRepository(registryId, repositoryName, state: state, settings: settings)
        guard let session = try state.session(uploadId), session.repository == ref, session.state == .active else {
            throw CommandError(.uploadNotFound, "The upload with id '\(uploadId)' does not exist or has ended in the repository with name '\(ref.repositoryName)' in the registry with id '\(ref.registryId)'")
        }
        return (ref, session)
    }
}

extension UploadSession {
    /// Whether `part` is this session's next part, so that its bytes are worth staging: the decider
    /// records it unless the state changes first. The caller checks this before any I/O.
    public func expects(_ part: UploadLayerPart, in ref: RepositoryRef, settings: DecisionSettings) -> Bool {
        expects(part.placement, length: part.partLength, in: ref, settings: settings)
    }

    /// The same, before the part's bytes are read: its placement and decoded length.
    public func expects(_ part: UploadLayerPart.Placement, length: UInt64, in ref: RepositoryRef, settings: DecisionSettings) -> Bool {
        state == .active && repository == ref && part.partFirstByte == bytesReceived && part.partLastByte >= part.partFirstByte
            && length == part.partLastByte - part.partFirstByte + 1
            && (part.rules == .registry
                ? settings.refusesAnotherChunk(after: partCount) == nil
                : length <= UploadLayerPart.maximumPartBytes && partCount < settings.maximumParts)
    }

    /// Whether the session's staged bytes are worth hashing into a layer: it is active, in `ref`,
    /// and, under ECR Public's rules, has parts, every one but the last large enough.
    public func isReadyToComplete(in ref: RepositoryRef, rules: PartRules) -> Bool {
        state == .active && repository == ref && (rules == .registry || (partCount > 0 && !hasSmallNonFinalPart))
    }
}
