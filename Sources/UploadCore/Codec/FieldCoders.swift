/// The `Encoder` and `Decoder` that give a ``FieldRecord``'s synthesized `Codable` conformance its
/// canonical bytes and its JSON. Only flat records are supported: every property is a
/// ``FieldValue`` (or one of the integer types) keyed by an integer `CodingKey`.

/// Where an encoder puts a flat record's fields: the canonical bytes, or JSON members.
protocol FieldSink: AnyObject {
    func put<Value: FieldValue>(_ value: Value, forKey key: some CodingKey)
}

/// The keyed container both encoders hand the synthesized `encode(to:)`: every property goes to the
/// sink as a ``FieldValue`` (integers as `UInt64`, which is how every integer field is stored).
struct FlatFieldContainer<Key: CodingKey, Sink: FieldSink>: KeyedEncodingContainerProtocol {
    let sink: Sink
    var codingPath: [any CodingKey] { [] }

    private func integer(_ value: some BinaryInteger, _ key: Key) {
        guard let unsigned = UInt64(exactly: value) else { preconditionFailure("\(key) is negative") }
        sink.put(unsigned, forKey: key)
    }

    mutating func encodeNil(forKey key: Key) {}
    mutating func encode(_ value: Bool, forKey key: Key) { sink.put(value, forKey: key) }
    mutating func encode(_ value: String, forKey key: Key) { sink.put(value, forKey: key) }
    mutating func encode(_ value: UInt64, forKey key: Key) { sink.put(value, forKey: key) }
    mutating func encode(_ value: Int, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: Int8, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: Int16, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: Int32, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: Int64, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: UInt, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: UInt8, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: UInt16, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: UInt32, forKey key: Key) { integer(value, key) }
    mutating func encode(_ value: Double, forKey key: Key) { preconditionFailure("field records hold no floating point") }
    mutating func encode(_ value: Float, forKey key: Key) { preconditionFailure("field records hold no floating point") }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) {
        guard let field = value as? any FieldValue else { preconditionFailure("\(T.self) is not a FieldValue") }
        sink.put(field, forKey: key)
    }
    mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
        preconditionFailure("field records are flat")
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { preconditionFailure("field records are flat") }
    mutating func superEncoder() -> any Encoder { preconditionFailure("field records are flat") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { preconditionFailure("field records are flat") }
}

/// An `Encoder` over a ``FieldSink``: only flat keyed records.
protocol FlatRecordEncoder: Encoder, FieldSink {}

extension FlatRecordEncoder {
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(FlatFieldContainer<Key, Self>(sink: self))
    }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { preconditionFailure("field records are flat") }
    func singleValueContainer() -> any SingleValueEncodingContainer { preconditionFailure("field records are flat") }
}

/// Writes a record's fields through ``FieldWriter``, in the order the synthesized code encodes
/// them, which is declaration order; the coding key's integer value is the tag.
final class FieldEncoder: FlatRecordEncoder {
    var writer: FieldWriter

    init(_ writer: FieldWriter) { self.writer = writer }

    func put<Value: FieldValue>(_ value: Value, forKey key: some CodingKey) {
        guard let tag = key.intValue, tag > 0 else { preconditionFailure("\(key) needs a positive integer tag") }
        value.write(UInt64(tag), to: &writer)
    }
}

/// Reads a record's fields once, then hands them to the synthesized `init(from:)` by tag, and
/// afterwards refuses the record if it held a field its type does not declare.
final class FieldDecoder: Decoder {
    /// The highest tag any record may use; a higher one is unknown to every record.
    static let highestTag: UInt64 = 63

    /// The record's type; its name (``FieldRecord/recordName``) is made only for an error message,
    /// since a default name is `String(describing:)`, which cost a tenth of replay when made per record.
    private let recordType: any FieldRecord.Type
    var record: String { recordType.recordName }
    private let fields: [(tag: UInt64, value: FieldReader.Value)]
    /// Bit `tag` is set once field `tag` has been read.
    private var read: UInt64 = 0
    let codingPath: [any CodingKey] = []
    let userInfo: [CodingUserInfoKey: Any] = [:]

    init(_ reader: FieldReader, record recordType: any FieldRecord.Type) throws(CodecError) {
        self.recordType = recordType
        var reader = reader
        var fields: [(tag: UInt64, value: FieldReader.Value)] = []
        while let (tag, value) = try reader.next() {
            guard tag <= Self.highestTag else { throw .unknownTag(tag, in: recordType.recordName) }
            fields.append((tag, value))
        }
        self.fields = fields
    }

    func value(_ tag: UInt64) -> FieldReader.Value? {
        for field in fields where field.tag == tag {
            read |= 1 << tag
            return field.value
        }
        return nil
    }

    func checkAllFieldsRead() throws(CodecError) {
        if let unknown = fields.first(where: { read & (1 << $0.tag) == 0 }) { throw .unknownTag(unknown.tag, in: record) }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Fields(decoder: self))
    }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { throw CodecError("\(record) is a flat record") }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { throw CodecError("\(record) is a flat record") }

    struct Fields<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: FieldDecoder
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { [] }

        private func tag(_ key: Key) -> UInt64 {
            guard let tag = key.intValue, tag > 0, UInt64(tag) <= FieldDecoder.highestTag else {
                preconditionFailure("\(key) needs an integer tag from 1 to \(FieldDecoder.highestTag)")
            }
            return UInt64(tag)
        }
        private func read<T: FieldValue>(_ type: T.Type, _ key: Key) throws(CodecError) -> T {
            guard let value = decoder.value(tag(key)) else {
                guard let absent = T.whenAbsent else { throw .missing(key.stringValue, in: decoder.record) }
                return absent
            }
            return try T(field: value, name: key.stringValue)
        }
        private func integer<I: FixedWidthInteger>(_ type: I.Type, _ key: Key) throws(CodecError) -> I {
            guard let value = I(exactly: try read(UInt64.self, key)) else { throw CodecError("\(key.stringValue) out of range") }
            return value
        }
        // An optional property: one look-up. (The protocol's default asks `contains`, then
        // `decodeNil`, then `decode`: three look-ups and a generic call for each optional field.)
        private func readIfPresent<T: FieldValue>(_ type: T.Type, _ key: Key) throws(CodecError) -> T? {
            guard let value = decoder.value(tag(key)) else { return nil }
            return try T(field: value, name: key.stringValue)
        }
        private func integerIfPresent<I: FixedWidthInteger>(_ type: I.Type, _ key: Key) throws(CodecError) -> I? {
            guard let value = try readIfPresent(UInt64.self, key) else { return nil }
            guard let integer = I(exactly: value) else { throw CodecError("\(key.stringValue) out of range") }
            return integer
        }

        func contains(_ key: Key) -> Bool { decoder.fields.contains { $0.tag == tag(key) } }
        func decodeNil(forKey key: Key) -> Bool { !contains(key) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try read(type, key) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try read(type, key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try read(type, key) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(type, key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(type, key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(type, key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(type, key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(type, key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(type, key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(type, key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(type, key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(type, key) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { throw CodecError("field records hold no floating point") }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { throw CodecError("field records hold no floating point") }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            guard let fieldType = T.self as? any FieldValue.Type else { throw CodecError("\(T.self) is not a FieldValue") }
            return try read(fieldType, key) as! T
        }
        func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try readIfPresent(type, key) }
        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try readIfPresent(type, key) }
        func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try readIfPresent(type, key) }
        func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try integerIfPresent(type, key) }
        func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try integerIfPresent(type, key) }
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let fieldType = T.self as? any FieldValue.Type else { throw CodecError("\(T.self) is not a FieldValue") }
            return try readIfPresent(fieldType, key).map { $0 as! T }
        }
        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            throw CodecError("\(decoder.record) is a flat record")
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { throw CodecError("\(decoder.record) is a flat record") }
        func superDecoder() throws -> any Decoder { throw CodecError("\(decoder.record) is a flat record") }
        func superDecoder(forKey key: Key) throws -> any Decoder { throw CodecError("\(decoder.record) is a flat record") }
    }
}

/// Collects a record's fields as JSON members, named by their coding keys.
final class JSONFieldEncoder: FlatRecordEncoder {
    var members: [(String, JSONValue?)] = []

    func put<Value: FieldValue>(_ value: Value, forKey key: some CodingKey) { members.append((key.stringValue, value.json)) }
}
