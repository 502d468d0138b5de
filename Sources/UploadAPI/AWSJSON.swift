import Foundation
import UploadCore

/// A request body of the AWS JSON 1.1 protocol: one JSON object. Accessors check member types
/// and answer `SerializationException` for a wrong one, as AWS JSON services do; constraints on
/// values are the commands' to check (`InvalidParameterException`).
struct RequestBody {
    private let object: [String: Any]

    /// An empty body counts as `{}` (Smithy: servers must accept it).
    init(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else {
            object = [:]
            return
        }
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
            throw APIError.serialization("The request body is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else {
            throw APIError.serialization("The request body must be a JSON object")
        }
        self.object = object
    }

    private func value(_ key: String) -> Any? {
        guard let v = object[key], !(v is NSNull) else { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v as? String else { throw APIError.serialization("'\(key)' must be a string") }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, Self.isBoolean(n) else { throw APIError.serialization("'\(key)' must be a boolean") }
        return n.boolValue
    }

    /// A JSON integer that fits in 64 bits.
    func int64(_ key: String) throws -> Int64? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, !Self.isBoolean(n) else { throw APIError.serialization("'\(key)' must be a number") }
        // Integers parse as integer NSNumbers; 5.0, 1e3 and out-of-range values do not.
        guard String(cString: n.objCType) != "d", let exact = Int64(n.stringValue) else {
            throw APIError.serialization("'\(key)' must be a whole number within 64 bits")
        }
        return exact
    }

    /// JSONSerialization gives `true`/`false` as NSNumbers of ObjC type `c`.
    private static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    func strings(_ key: String) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let list = v as? [Any], let strings = list as? [String] else {
            throw APIError.serialization("'\(key)' must be a list of strings")
        }
        return strings
    }

    func imageIds(_ key: String) throws -> [ImageIdentifier]? {
        guard let v = value(key) else { return nil }
        guard let list = v as? [Any] else { throw APIError.serialization("'\(key)' must be a list of image ids") }
        return try list.map { item in
            guard let id = item as? [String: Any] else { throw APIError.serialization("each of '\(key)' must be an object") }
            let digest = id["imageDigest"], tag = id["imageTag"]
            guard digest == nil || digest is String, tag == nil || tag is String else {
                throw APIError.serialization("imageDigest and imageTag must be strings")
            }
            return ImageIdentifier(imageDigest: digest as? String, imageTag: tag as? String)
        }
    }
}
