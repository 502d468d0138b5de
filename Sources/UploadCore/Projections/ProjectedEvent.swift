/// What the projections read of a logged event: its position, its time, the event, and the mark of
/// the SDK call it came from. ``Projector`` folds these.
///
/// Replay decodes only this from each record (``init(position:decoding:)``): of the request
/// metadata it reads the request and invocation ids and leaves the rest (user agent, address,
/// principal, which no projection reads) as bytes, unchecked. Decoding that metadata whole took a
/// quarter of replay's fold. `upload-replay verify` still decodes every record whole beside its two
/// rebuilds, so a damaged metadata record is still found.
public struct ProjectedEvent: Sendable, Equatable {
    public let position: UInt64
    public let recordedAt: Timestamp
    public let event: Event
    /// Present when the event's call sent an `amz-sdk-invocation-id`.
    public let invocation: InvocationMark?

    public init(_ envelope: EventEnvelope) {
        position = envelope.position
        recordedAt = envelope.recordedAt
        event = envelope.event
        invocation = InvocationMark(envelope)
    }

    /// Decodes a log value as ``EventEnvelope/init(position:decoding:)`` does, but the metadata
    /// only as far as the invocation mark needs.
    public init(position: UInt64, decoding bytes: ArraySlice<UInt8>) throws(CodecError) {
        let record = try LogRecord(bytes)
        self.position = position
        recordedAt = record.recordedAt
        event = try record.event()
        invocation = try InvocationMark(metadata: record.metadata, recordedAt: record.recordedAt)
    }
}

extension InvocationMark {
    /// The mark from a metadata record's bytes, reading only the two ids (tags from
    /// ``RequestMetadata``'s one declaration); `nil` without an invocation id.
    init?(metadata bytes: ArraySlice<UInt8>, recordedAt: Timestamp) throws(CodecError) {
        typealias Field = RequestMetadata.FieldTag
        var reader = FieldReader(bytes)
        var requestId: String?, invocationId: String?
        while let (tag, value) = try reader.next() {
            switch Field(rawValue: tag) {
            case .requestId: requestId = try value.string("requestId")
            case .invocationId: invocationId = try value.string("invocationId")
            default: continue
            }
        }
        guard let invocationId else { return nil }
        self.init(
            invocationId: invocationId, requestId: try required(requestId, "requestId", in: RequestMetadata.recordName),
            recordedAt: recordedAt)
    }
}
