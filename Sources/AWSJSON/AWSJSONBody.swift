import Foundation
import JSONGrammar

/// A body the AWS JSON 1.1 protocol cannot read: AWS answers these with `SerializationException`.
public struct SerializationError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A request body of the AWS JSON 1.1 protocol: one JSON object. Accessors check member types
/// and throw ``SerializationError`` for a wrong one, as AWS JSON services do; constraints on
/// values are the commands' to check (`InvalidParameterException`).
///
/// Its own target: it knows the protocol, not the operations, which `ECRRequests` maps onto
/// commands. Bodies are read by ``JSONGrammar/ParsedJSON`` (RFC 8259 exactly, in one pass),
/// not by Foundation, whose grammar and numbers differ between toolchains.
public struct AWSJSONBody {
    /// The body's members, or a structure member's.
    private let object: ParsedJSON
    /// The body itself, for the long string members read straight from it.
    private let bytes: [UInt8]
    /// Where each long string member's text lies in `bytes` (see ``LargeStringMembers``); the
    /// parsed object holds `""` in its place, so type checks on it still see a string.
    private let longStrings: [String: Range<Int>]

    /// An empty body counts as `{}` (Smithy: servers must accept it).
    public init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        guard !bytes.isEmpty else {
            object = .object([])
            longStrings = [:]
            return
        }
        // UTF-8 only, as the protocol sends it (RFC 8259: no byte-order mark, and a NUL in a
        // string must be escaped).
        guard !bytes.starts(with: [0xEF, 0xBB, 0xBF]), !bytes.contains(0) else {
            throw SerializationError("The request body must be JSON in UTF-8, without a byte-order mark")
        }
        let lifted = LargeStringMembers.lift(bytes)
        guard !JSONGrammar.holdsMoreValues(than: Self.maximumValues, lifted?.document ?? bytes) else {
            throw SerializationError("The request body holds more than \(Self.maximumValues) JSON values")
        }
        let parsed: ParsedJSON
        do {
            parsed = try ParsedJSON(parsing: lifted?.document ?? bytes, grammar: .strict)
        } catch {
            throw SerializationError("The request body is not valid JSON: \(error)")
        }
        guard parsed.isObject else {
            throw SerializationError("The request body must be a JSON object")
        }
        guard !parsed.holdsANumberBeyondADouble else {
            throw SerializationError("The request body holds a number beyond a double's range")
        }
        object = parsed
        longStrings = lifted?.members ?? [:]
    }

    /// The most values a body may hold. ECR's largest requests hold a few hundred (200 tags, 100
    /// image ids of two members). A parsed value takes tens of bytes, so a 30 MB body of small
    /// numbers would cost hundreds of megabytes to parse; counted first, it costs nothing.
    public static let maximumValues = 10_000

    /// A string member's UTF-8 bytes, without making a `String` of a long one: a slice of the
    /// body itself (a layer part's base64, say, is read in place).
    public func stringBytes(_ key: String) throws -> ArraySlice<UInt8>? {
        if let range = longStrings[key] { return bytes[range] }
        return try string(key).map { Array($0.utf8)[...] }
    }

    private init(structure: ParsedJSON) {
        object = structure
        bytes = []
        longStrings = [:]
    }

    /// A structure member, read with the same accessors.
    public func structure(_ key: String) throws -> AWSJSONBody? {
        guard let v = value(key) else { return nil }
        guard v.isObject else { throw SerializationError("'\(key)' must be an object") }
        return AWSJSONBody(structure: v)
    }

    /// A blob member: its standard base64 decoded.
    public func blob(_ key: String) throws -> [UInt8]? {
        guard let text = try string(key) else { return nil }
        guard let data = Data(base64Encoded: text) else { throw SerializationError("'\(key)' must be standard base64") }
        return Array(data)
    }

    /// The member `key`; `nil` when absent or null, as AWS JSON reads a null member.
    private func value(_ key: String) -> ParsedJSON? {
        guard let v = object[member: key], v != .null else { return nil }
        return v
    }

    public func string(_ key: String) throws -> String? {
        if let range = longStrings[key] { return String(decoding: bytes[range], as: UTF8.self) }
        guard let v = value(key) else { return nil }
        guard let s = v.string else { throw SerializationError("'\(key)' must be a string") }
        return s
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let flag) = v else { throw SerializationError("'\(key)' must be a boolean") }
        return flag
    }

    /// A JSON integer that fits in 64 bits.
    public func int64(_ key: String) throws -> Int64? {
        guard let v = value(key) else { return nil }
        guard case .number = v else { throw SerializationError("'\(key)' must be a number") }
        // Written as a whole number: 5.0, 1e3 and out-of-range values are not.
        guard let exact = v.integer else { throw SerializationError("'\(key)' must be a whole number within 64 bits") }
        return exact
    }

    public func strings(_ key: String) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let list = v.array else { throw SerializationError("'\(key)' must be a list of strings") }
        let strings = list.compactMap(\.string)
        guard strings.count == list.count else { throw SerializationError("'\(key)' must be a list of strings") }
        return strings
    }

    /// A list of objects, each read for the string members `members` (others are ignored).
    public func objects(_ key: String, stringMembers members: [String]) throws -> [[String: String]]? {
        guard let v = value(key) else { return nil }
        guard let list = v.array else { throw SerializationError("'\(key)' must be a list of objects") }
        return try list.map { item in
            guard item.isObject else { throw SerializationError("each of '\(key)' must be an object") }
            var strings: [String: String] = [:]
            for member in members {
                guard let value = item[member: member], value != .null else { continue }
                guard let string = value.string else { throw SerializationError("'\(member)' in '\(key)' must be a string") }
                strings[member] = string
            }
            return strings
        }
    }
}
