/// An event as the log holds it: its position, when it was recorded, and who asked for it.
public struct EventEnvelope: Sendable, Equatable {
    /// Dense and gapless, from 1. The log's key; not part of the stored value.
    public let position: UInt64
    /// When the transaction holding the event committed (never earlier than the previous event's).
    public let recordedAt: Timestamp
    public let metadata: RequestMetadata
    public let event: Event

    public init(position: UInt64, recordedAt: Timestamp, metadata: RequestMetadata, event: Event) {
        self.position = position
        self.recordedAt = recordedAt
        self.metadata = metadata
        self.event = event
    }

    /// The log's value for this event, in canonical form:
    /// 1 type code · 2 schema version · 3 recordedAt (ms) · 4 metadata record · 5 payload record.
    public func encoded() -> [UInt8] {
        var payload = FieldWriter()
        event.payload.encode(into: &payload)
        var metadataFields = FieldWriter()
        var w = FieldWriter()
        w.uint(1, UInt64(event.type.rawValue))
        w.uint(2, UInt64(Swift.type(of: event.payload).schemaVersion))
        w.uint(3, UInt64(recordedAt.millisecondsSinceEpoch))
        metadata.encode(into: &metadataFields)
        w.record(4, metadataFields)
        w.record(5, payload)
        return w.bytes
    }

    /// Decodes a log value, refusing anything not in canonical form or not known to this binary.
    public init(position: UInt64, decoding bytes: ArraySlice<UInt8>) throws(CodecError) {
        let record = try LogRecord(bytes)
        self.position = position
        self.recordedAt = record.recordedAt
        self.metadata = try RequestMetadata(decoding: record.metadata)
        self.event = try record.event()
    }

    public init(position: UInt64, decoding bytes: [UInt8]) throws(CodecError) {
        try self.init(position: position, decoding: bytes[...])
    }

    /// One line of the `events` feed: position, type, version, recordedAt, metadata, data.
    public var json: JSONValue { json(adding: []) }

    /// ``json`` with `members` beside the envelope's own (what a feed adds of the log around it).
    public func json(adding members: [(String, JSONValue)]) -> JSONValue {
        .object(sorting: [
            ("position", .uint(position)),
            ("type", .string(event.type.name)),
            ("version", .uint(UInt64(Swift.type(of: event.payload).schemaVersion))),
            ("recordedAt", .string(recordedAt.iso8601)),
            ("metadata", metadata.json),
            ("data", event.payload.json),
        ] + members)
    }
}

/// A log value's framing, parsed once for both decoders (``EventEnvelope`` and
/// ``ProjectedEvent``): the type, version and time, and the metadata and payload as bytes.
struct LogRecord {
    let type: EventType
    let version: UInt32
    let recordedAt: Timestamp
    let metadata: ArraySlice<UInt8>
    let payload: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) throws(CodecError) {
        var r = FieldReader(bytes)
        var typeCode: UInt64?, version: UInt64?, recordedAt: Int64?
        var metadata: ArraySlice<UInt8>?, payload: ArraySlice<UInt8>?
        while let (tag, v) = try r.next() {
            switch tag {
            case 1: typeCode = try v.uint("type")
            case 2: version = try v.uint("version")
            case 3: recordedAt = try v.int64("recordedAt")
            case 4: metadata = try v.bytes("metadata")
            case 5: payload = try v.bytes("payload")
            default: throw .unknownTag(tag, in: "event record")
            }
        }
        let code = try required(typeCode, "type", in: "event record")
        guard let type = UInt32(exactly: code).flatMap(EventType.init(rawValue:)) else {
            throw CodecError("event type \(code) is not known to this binary")
        }
        guard let version = try UInt32(exactly: required(version, "version", in: "event record")) else {
            throw CodecError("event version out of range")
        }
        self.type = type
        self.version = version
        self.recordedAt = Timestamp(millisecondsSinceEpoch: try required(recordedAt, "recordedAt", in: "event record"))
        self.metadata = try required(metadata, "metadata", in: "event record")
        self.payload = try required(payload, "payload", in: "event record")
    }

    func event() throws(CodecError) -> Event {
        try Event.decode(type: type, version: version, payload: FieldReader(payload))
    }
}
