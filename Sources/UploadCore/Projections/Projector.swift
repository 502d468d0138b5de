/// Folds events into the projection tables. A pure function of the events: the same log gives
/// the same table bytes, whether applied live in the writer's transaction or rebuilt by replay.
public enum Projector {
    /// The layout version of every table this file writes. Bump it when a record or key layout
    /// changes; a store whose tables carry another version rebuilds them from the log on open.
    public static let version: UInt32 = 1

    /// Applies one event. Throws ``ProjectionError`` when the event contradicts the tables, which
    /// a log written by the decider never does: it means the log or the tables were altered.
    public static func apply(_ envelope: EventEnvelope, to tables: inout some ProjectionTables) throws {
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
            guard repository.activeSessions == 0 else {
                throw ProjectionError(envelope, "repository \(e.repository) still has active uploads")
            }
            try tables.delete(.repositories, ProjectionKey.repository(e.repository))

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
            try tables.put(.repositoryUploads, ProjectionKey.repositoryUpload(e.repository, e.uploadId), [])

        case .uploadAborted(let e):
            guard var session = try tables.session(e.uploadId), session.state == .active else {
                throw ProjectionError(envelope, "upload \(e.uploadId) is not active")
            }
            guard var repository = try tables.repository(e.repository), repository.activeSessions > 0 else {
                throw ProjectionError(envelope, "repository \(e.repository) has no active upload \(e.uploadId)")
            }
            session.state = .aborted
            session.lastActivityAt = envelope.recordedAt
            session.lastPosition = envelope.position
            repository.activeSessions -= 1
            repository.touch(envelope)
            try tables.put(session)
            try tables.put(repository)
            try tables.delete(.repositoryUploads, ProjectionKey.repositoryUpload(e.repository, e.uploadId))
        }
    }
}

extension RepositorySummary {
    fileprivate mutating func touch(_ envelope: EventEnvelope) {
        lastActivityAt = envelope.recordedAt
        lastPosition = envelope.position
    }
}

/// An event that cannot follow the state before it.
public struct ProjectionError: Error, CustomStringConvertible, Sendable {
    public let position: UInt64
    public let reason: String

    init(_ envelope: EventEnvelope, _ reason: String) {
        self.position = envelope.position
        self.reason = reason
    }

    public var description: String { "event at position \(position) (\(reason))" }
}
