import UploadCore

extension FlatProjectionState {
    /// Folds an upload's initiation, part or completion straight from its bytes: what
    /// ``Projector/apply(_:to:)`` does for these three events, with the same checks in the same
    /// order and the same words, on numbers instead of records. `bytes` is the buffer the event's
    /// ranges point into.
    mutating func apply(_ event: FlatUploadEvent, in bytes: UnsafeRawBufferPointer) throws(ProjectionError) {
        func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[range]) }
        func text(_ range: Range<Int>) -> String { String(decoding: slice(range), as: UTF8.self) }
        let ref = { RepositoryRef(registryId: text(event.registryId), repositoryName: text(event.repositoryName)) }
        func refused(_ reason: String) -> ProjectionError { ProjectionError(position: event.position, reason) }

        if let (invocationId, requestId) = event.invocation {
            putMark(at: event.position, recordedAt: event.recordedAt, slice(invocationId), slice(requestId))
        }
        let repository = repositoryNumber(registryId: slice(event.registryId), repositoryName: slice(event.repositoryName))
        switch event.body {
        case .initiated(let partSize, let initiatedAt):
            // Interned at once (a refused event ends the rebuild, so a name left without a session is never read).
            let upload = makeRoomForUpload(uploadIds.intern(slice(event.uploadId)))
            guard sessions[upload] == nil else { throw refused("upload \(text(event.uploadId)) already exists") }
            guard let repository, repositories[repository] != nil else { throw refused("repository \(ref()) does not exist") }
            repositories[repository]!.uploadsInitiated += 1
            repositories[repository]!.activeSessions += 1
            touchRepository(repository, event)
            sessions[upload] = FlatSession(
                repository: Int32(repository), state: .active, partSize: partSize, initiatedAt: initiatedAt,
                initiatedPosition: event.position, lastActivityAt: event.recordedAt, lastPosition: event.position,
                bytesReceived: 0, partCount: 0, lastPartFirstByte: nil, lastPartLastByte: nil, lastPartDigest: -1,
                hasSmallNonFinalPart: false, layerDigest: -1)
            activeIn[upload] = Int32(repository)
            recordInitiation(FlatInitiation(time: event.recordedAt.millisecondsSinceEpoch, position: event.position, repository: Int32(repository)))

        case .partUploaded(let firstByte, let lastByte, let digest):
            let (upload, repository) = try activeSession(event.position, uploadIds.find(slice(event.uploadId)), repository, text(event.uploadId), ref)
            let session = sessions[upload]!
            guard firstByte == session.bytesReceived else {
                throw refused("part starts at \(firstByte) but upload \(text(event.uploadId)) has \(session.bytesReceived) bytes")
            }
            if let first = session.lastPartFirstByte, let last = session.lastPartLastByte, session.lastPartDigest >= 0,
               last - first + 1 < UploadSession.minimumPartBytes {
                sessions[upload]!.hasSmallNonFinalPart = true
            }
            sessions[upload]!.lastPartFirstByte = firstByte
            sessions[upload]!.lastPartLastByte = lastByte
            sessions[upload]!.lastPartDigest = Int32(digests.intern(slice(digest)))
            sessions[upload]!.partCount += 1
            sessions[upload]!.bytesReceived = lastByte + 1
            touchSession(upload, event)
            touchRepository(repository, event)

        case .completed(let layerDigest, let layerSize):
            if let repository, let digest = digests.find(slice(layerDigest)), layerSlot(repository, digest).flatMap({ layers[$0] }) != nil {
                throw refused("layer \(text(layerDigest)) already exists in \(ref())")
            }
            let (upload, repository) = try activeSession(event.position, uploadIds.find(slice(event.uploadId)), repository, text(event.uploadId), ref)
            guard repositories[repository]!.activeSessions > 0 else { throw refused("repository \(ref()) counts no active upload") }
            sessions[upload]!.state = .completed
            touchSession(upload, event)
            repositories[repository]!.activeSessions -= 1
            touchRepository(repository, event)
            let digest = digests.intern(slice(layerDigest))
            sessions[upload]!.layerDigest = Int32(digest)
            repositories[repository]!.layerCount += 1
            activeIn[upload] = -1
            layerIndex[Self.layerKey(repository, digest)] = layers.count
            layers.append(FlatLayer(
                repository: Int32(repository), digest: Int32(digest), upload: Int32(upload), layerSize: layerSize,
                completedAt: event.recordedAt))
        }
    }

    /// The upload and its repository, when the upload is active in that repository (``Projector``'s `activeSession`).
    private func activeSession(
        _ position: UInt64, _ upload: Int?, _ repository: Int?, _ uploadId: @autoclosure () -> String, _ ref: () -> RepositoryRef
    ) throws(ProjectionError) -> (upload: Int, repository: Int) {
        guard let upload, let session = sessions[upload], session.state == .active, let repository, Int(session.repository) == repository else {
            throw ProjectionError(position: position, "upload \(uploadId()) is not active in \(ref())")
        }
        guard repositories[repository] != nil else { throw ProjectionError(position: position, "repository \(ref()) does not exist") }
        return (upload, repository)
    }

    private mutating func touchSession(_ upload: Int, _ event: FlatUploadEvent) {
        sessions[upload]!.lastActivityAt = event.recordedAt
        sessions[upload]!.lastPosition = event.position
    }

    private mutating func touchRepository(_ repository: Int, _ event: FlatUploadEvent) {
        repositories[repository]!.lastActivityAt = event.recordedAt
        repositories[repository]!.lastPosition = event.position
    }

    /// The number of the repository these names make, as ``ProjectionKey/repository(_:)`` joins them.
    private func repositoryNumber(registryId: UnsafeRawBufferPointer, repositoryName: UnsafeRawBufferPointer) -> Int? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: registryId.count + 1 + repositoryName.count) { key in
            let raw = UnsafeMutableRawBufferPointer(key)
            raw.copyMemory(from: registryId)
            raw[registryId.count] = UInt8(ascii: "/")
            UnsafeMutableRawBufferPointer(rebasing: raw[(registryId.count + 1)...]).copyMemory(from: repositoryName)
            return repositoryKeys.find(UnsafeRawBufferPointer(raw))
        }
    }
}
