/// An SDK call was answered with what no other event records: it succeeded and changed nothing (a
/// BatchDeleteImage whose every id was refused, an UntagResource of keys the repository did not
/// have, a part sent again), or it is a BatchDeleteImage whose events do not tell its answer: one
/// that refused an id, or whose untag and deletion by digest of one image read two ways (recorded
/// after them). Recorded only for a call that sent an `amz-sdk-invocation-id`
/// (``DecisionContext/sentInvocationId``), so that the retry window holds it: its retry is
/// answered as it was rather than decided again (which could delete a tag pushed in between, or
/// answer a refusal with another code), and another call reusing the id is refused. No projection
/// folds it but the invocation marks, which every event's call leaves.
@FieldRecord
public struct CallAnswered: EventPayload {
    public static let type = EventType.callAnswered
    public var event: Event { .callAnswered(self) }

    public let registryId: String
    /// The repository the call named; `nil` for a call on the registry (PutRegistryCatalogData).
    public let repositoryName: String?
    /// The API operation, as ``Command/operationName`` names it (`BatchDeleteImage`).
    public let operation: String
    /// A BatchDeleteImage's outcomes as answered, one per requested id in the request's order (a
    /// retry repeats the request): its refusal's ``ImageFailure/Code``, or empty text where the id
    /// was deleted or untagged. Its retry answers them again whatever changed since, reading what
    /// each deleted from the call's events. Empty for other calls. Codes only: a reason may name
    /// many lists.
    /// Kept as text, not checked against the codes this binary knows, so that a later binary's new
    /// code does not make the log unreadable here (a retry reads one it does not know as
    /// `ImageNotFound`).
    public let failureCodes: [String]

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, operation, failureCodes }

    public func validate() throws(CodecError) {
        guard !operation.isEmpty else { throw CodecError("\(Self.recordName) names no operation") }
    }
}

extension Event {
    /// The call whose answer this event holds, if it is ``CallAnswered``.
    public var answeredCall: CallAnswered? { if case .callAnswered(let e) = self { e } else { nil } }
}
