public import UploadCore

/// What each operation of ``UploadService`` answers: typed results, whatever the front end.

/// InitiateLayerUpload's answer.
public struct UploadStarted: Sendable, Equatable {
    public let repository: RepositoryRef
    public let uploadId: String
    public let partSize: UInt64
}

/// UploadLayerPart's answer: the part is recorded (now, or by the call this one retries).
public struct PartAccepted: Sendable, Equatable {
    public let repository: RepositoryRef
    public let uploadId: String
    public let lastByteReceived: UInt64
}

/// CompleteLayerUpload's answer: the layer is in the blob store and recorded.
public struct LayerCompleted: Sendable, Equatable {
    public let repository: RepositoryRef
    public let uploadId: String
    public let layerDigest: String
}

/// DeleteRepository's answer.
public struct RepositoryRemoved: Sendable, Equatable {
    public let repository: RepositoryRef
    /// When the repository was created; `nil` when this answers a retry of a delete recorded
    /// before ``RepositoryDeleted`` kept it.
    public let createdAt: Timestamp?
    /// The uploads in progress the delete aborted.
    public let abortedUploads: [String]
}

/// BatchDeleteImage's answer: what was deleted, and what could not be, per requested id.
public struct ImagesDeleted: Sendable, Equatable {
    public let imageIds: [ImageIdentifier]
    public let failures: [ImageFailure]
}

/// An outcome that lacks the event its command records: the store answered something other
/// than what it was asked (a bug, never the caller's doing).
public struct UnexpectedOutcome: Error, CustomStringConvertible {
    public let description: String
}

extension Array where Element == EventEnvelope {
    /// The first event of type `P`, or ``UnexpectedOutcome``.
    func first<P: EventPayload>(_ type: P.Type, recordedBy operation: String) throws -> P {
        for envelope in self { if let event = envelope.event.payload as? P { return event } }
        throw UnexpectedOutcome(description: "\(operation) recorded no \(P.recordName)")
    }
}
