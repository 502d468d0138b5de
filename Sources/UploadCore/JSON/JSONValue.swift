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

    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    public func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .string(let s): Self.writeString(s, to: &out)
        case .number(let n): out += n
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                Self.writeString(key, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f || (0x2028...0x2029).contains(scalar.value):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
