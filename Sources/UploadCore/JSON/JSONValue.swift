/// A JSON value with a deterministic text form: object members are written in the order given,
/// which every producer in this package makes sorted, and no whitespace.
///
/// Used at the edges (CLI output, feeds); the log itself is binary (see ``FieldWriter``).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    /// A number already in JSON's number syntax, e.g. an epoch-seconds timestamp.
    case number(String)
    case array([JSONValue])
    /// Members in the order written; use ``object(sorting:)`` to build one from unordered pairs.
    case object([(String, JSONValue)])

    /// An object whose members are sorted by key, so its text never depends on insertion order.
    public static func object(sorting members: [(String, JSONValue?)]) -> JSONValue {
        .object(members.compactMap { key, value in value.map { (key, $0) } }.sorted { $0.0 < $1.0 })
    }

    /// A timestamp as AWS JSON writes it: epoch seconds with milliseconds, e.g. `1796083200.123`.
    public static func epochSeconds(_ t: Timestamp) -> JSONValue {
        let ms = t.millisecondsSinceEpoch
        let fraction = String(abs(ms % 1000))
        return .number("\(ms / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)")
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.text == b.text }

    public var text: String { String(decoding: utf8, as: UTF8.self) }

    /// The text form's bytes, written straight into an array (what a response body sends).
    public var utf8: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(to: &out)
        return out
    }

    public func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .uint(let u): out.append(contentsOf: String(u).utf8)
        case .string(let s): Self.writeString(s, to: &out)
        case .number(let n): out.append(contentsOf: n.utf8)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A string in quotes, escaped where JSON requires it, and as `\uXXXX` where a reader would
    /// otherwise be misled (``Unicode/Scalar/misleadsWhenShown``: C1's controls reach a terminal
    /// that prints an event, U+2028 and U+2029 end a line for JavaScript and for readers that
    /// split on Unicode's line ends, a bidirectional override reorders what follows). Most strings
    /// need no escape: their bytes are copied whole.
    private static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            // The lead bytes of every scalar that misleads when shown past ASCII's (C2: C1's
            // controls; D8: U+061C; E2: U+200E to U+2069), and of many other scalars: those go the
            // scalar-by-scalar way, which escapes exactly the ones that mislead.
            if !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0x7F || $0 == 0xC2 || $0 == 0xD8 || $0 == 0xE2 }) {
                out.append(contentsOf: bytes)
                return
            }
            for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
                switch scalar {
                case "\"": out.append(contentsOf: "\\\"".utf8)
                case "\\": out.append(contentsOf: "\\\\".utf8)
                case "\n": out.append(contentsOf: "\\n".utf8)
                case "\r": out.append(contentsOf: "\\r".utf8)
                case "\t": out.append(contentsOf: "\\t".utf8)
                case _ where scalar.misleadsWhenShown:
                    let hex = String(scalar.value, radix: 16)
                    out.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
                default: out.append(contentsOf: UTF8.encode(scalar)!)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
