/// A logged event as replay's flat fold reads it.
///
/// An upload's initiation, its parts and its completion are nearly every event of a log, so these
/// three are decoded without making a `String` or any other object: their names are byte ranges
/// into the buffer the record was copied to, and the fold interns them. Every other event, and any
/// record the fast path does not take (text that is not ASCII, a field it does not expect, a
/// version other than 1), is decoded by the one real decoder, as far as projections read it
/// (``ProjectedEvent``). So the fast path never accepts what that decoder refuses, and a refused
/// record is described by its error.
package enum FlatEvent: Sendable {
    case upload(FlatUploadEvent)
    case decoded(ProjectedEvent)

    /// Copies `record` to the end of `buffer`, where the event's ranges point, when the fast path
    /// takes it; any other record is decoded from a copy there that is then taken back (its event
    /// holds its own copies: a manifest of 4 MiB is not held twice).
    package init(position: UInt64, record: UnsafeRawBufferPointer, appendingTo buffer: inout [UInt8]) throws(CodecError) {
        let start = buffer.count
        buffer.append(contentsOf: record)
        if let event = FlatUploadEvent(position: position, record: record, at: start) {
            self = .upload(event)
            return
        }
        defer { buffer.removeSubrange(start...) }
        self = .decoded(try ProjectedEvent(position: position, decoding: buffer[start...]))
    }
}

/// One of the three events of an upload's way through the log, its names as byte ranges.
package struct FlatUploadEvent: Sendable {
    package typealias Bytes = Range<Int>

    package enum Body: Sendable {
        case initiated(partSize: UInt64, initiatedAt: Timestamp)
        case partUploaded(firstByte: UInt64, lastByte: UInt64, digest: Bytes)
        case completed(layerDigest: Bytes, layerSize: UInt64)
    }

    package let position: UInt64
    package let recordedAt: Timestamp
    /// The SDK call's invocation and request ids, when it sent an invocation id (``InvocationMark``).
    package let invocation: (invocationId: Bytes, requestId: Bytes)?
    package let uploadId: Bytes
    package let registryId: Bytes
    package let repositoryName: Bytes
    package let body: Body

    package var type: EventType {
        switch body {
        case .initiated: .uploadInitiated
        case .partUploaded: .layerPartUploaded
        case .completed: .layerUploadCompleted
        }
    }

    /// `nil` for anything but a canonical record of the three types, with ASCII text, that
    /// ``ProjectedEvent`` would decode to the same values. Ranges are offsets into `record` plus `offset`.
    init?(position: UInt64, record: UnsafeRawBufferPointer, at offset: Int) {
        // The framing's fields are all required, so a canonical record holds tags 1...5 in order
        // (``EventEnvelope/encoded()``); so does each payload of the three.
        var framing = FieldsInOrder(record, 0..<record.count, offset)
        guard let code = framing.number(Framing.type), let type = UInt32(exactly: code).flatMap(EventType.init(rawValue:)),
              framing.number(Framing.version) == 1, let recordedAt = framing.time(Framing.recordedAt),
              let metadataRange = framing.bytes(Framing.metadata), let payloadRange = framing.bytes(Framing.payload), framing.atEnd,
              let metadata = Metadata(record, metadataRange, offset) else { return nil }
        self.position = position
        self.recordedAt = recordedAt
        invocation = metadata.invocation
        var fields = FieldsInOrder(record, payloadRange, offset)
        typealias Initiated = UploadInitiated.FieldTag
        typealias Part = LayerPartUploaded.FieldTag
        typealias Completed = LayerUploadCompleted.FieldTag
        switch type {
        case .uploadInitiated:
            guard let uploadId = fields.text(Initiated.uploadId), let partSize = fields.number(Initiated.partSize),
                  let registryId = fields.text(Initiated.registryId), let repositoryName = fields.text(Initiated.repositoryName),
                  let initiatedAt = fields.time(Initiated.initiatedAt), fields.atEnd else { return nil }
            (self.uploadId, self.registryId, self.repositoryName) = (uploadId, registryId, repositoryName)
            body = .initiated(partSize: partSize, initiatedAt: initiatedAt)
        case .layerPartUploaded:
            guard let uploadId = fields.text(Part.uploadId), let registryId = fields.text(Part.registryId),
                  let repositoryName = fields.text(Part.repositoryName), let firstByte = fields.number(Part.partFirstByte),
                  let lastByte = fields.number(Part.partLastByte), lastByte >= firstByte, lastByte <= LayerPartUploaded.greatestLastByte,  // LayerPartUploaded.validate()
                  let digest = fields.text(Part.partDigest), fields.atEnd else { return nil }
            (self.uploadId, self.registryId, self.repositoryName) = (uploadId, registryId, repositoryName)
            body = .partUploaded(firstByte: firstByte, lastByte: lastByte, digest: digest)
        case .layerUploadCompleted:
            guard let uploadId = fields.text(Completed.uploadId), let registryId = fields.text(Completed.registryId),
                  let repositoryName = fields.text(Completed.repositoryName), let layerDigest = fields.text(Completed.layerDigest),
                  let layerSize = fields.number(Completed.layerSize), fields.atEnd else { return nil }
            (self.uploadId, self.registryId, self.repositoryName) = (uploadId, registryId, repositoryName)
            body = .completed(layerDigest: layerDigest, layerSize: layerSize)
        default:
            return nil
        }
    }

    /// The tags of a log record's framing (``EventEnvelope/encoded()``).
    private enum Framing: UInt64 { case type = 1, version, recordedAt, metadata, payload }

    /// The metadata's two ids, read as ``InvocationMark/init(metadata:recordedAt:)`` reads them
    /// (the other fields only framed, as there); `nil` for what the fast path does not take.
    private struct Metadata {
        var invocation: (invocationId: Bytes, requestId: Bytes)?

        init?(_ record: UnsafeRawBufferPointer, _ range: Range<Int>, _ offset: Int) {
            typealias Field = RequestMetadata.FieldTag
            var reader = RawFieldReader(record, range)
            var requestId: Bytes?, invocationId: Bytes?
            do {
                while let (tag, value) = try reader.next() {
                    switch Field(rawValue: tag) {
                    case .requestId: guard let text = FieldsInOrder.ascii(value, record, offset) else { return nil }; requestId = text
                    case .invocationId: guard let text = FieldsInOrder.ascii(value, record, offset) else { return nil }; invocationId = text
                    default: continue
                    }
                }
            } catch {
                return nil
            }
            guard let invocationId else { return }
            guard let requestId else { return nil }
            invocation = (invocationId, requestId)
        }
    }
}

/// A record's fields read one after another, each expected at its tag; ranges come out shifted by `offset`.
private struct FieldsInOrder {
    private let record: UnsafeRawBufferPointer
    private var reader: RawFieldReader
    private let offset: Int

    init(_ record: UnsafeRawBufferPointer, _ range: Range<Int>, _ offset: Int) {
        self.record = record
        self.reader = RawFieldReader(record, range)
        self.offset = offset
    }

    private mutating func next<Tag: RawRepresentable<UInt64>>(_ tag: Tag) -> FieldCursor.Value? {
        guard let field = try? reader.next(), field.tag == tag.rawValue else { return nil }
        return field.value
    }

    mutating func text<Tag: RawRepresentable<UInt64>>(_ tag: Tag) -> Range<Int>? {
        next(tag).flatMap { Self.ascii($0, record, offset) }
    }

    /// Bytes that are not text (a nested record), range in `record` itself, not shifted.
    mutating func bytes<Tag: RawRepresentable<UInt64>>(_ tag: Tag) -> Range<Int>? {
        guard case .bytes(let range)? = next(tag) else { return nil }
        return range
    }

    mutating func number<Tag: RawRepresentable<UInt64>>(_ tag: Tag) -> UInt64? {
        guard case .varint(let n)? = next(tag) else { return nil }
        return n
    }

    /// As ``Timestamp``'s field reads it: at most `Int64.max`.
    mutating func time<Tag: RawRepresentable<UInt64>>(_ tag: Tag) -> Timestamp? {
        guard let n = number(tag), let ms = Int64(exactly: n) else { return nil }
        return Timestamp(millisecondsSinceEpoch: ms)
    }

    /// Whether the record ends here, canonically.
    var atEnd: Bool {
        mutating get {
            do { return try reader.next() == nil } catch { return false }
        }
    }

    static func ascii(_ value: FieldCursor.Value, _ record: UnsafeRawBufferPointer, _ offset: Int) -> Range<Int>? {
        guard case .bytes(let range) = value, ExactBytes.isASCII(UnsafeRawBufferPointer(rebasing: record[range])) else { return nil }
        return (range.lowerBound + offset)..<(range.upperBound + offset)
    }
}
