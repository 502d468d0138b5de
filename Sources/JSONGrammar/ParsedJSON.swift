/// A JSON text parsed without Foundation, so that what the projector reads of a stored manifest
/// does not depend on the toolchain or the platform that replays the log.
///
/// Foundation's `JSONSerialization` (which read manifests before) takes, on Linux, texts that
/// RFC 8259 refuses, and manifests stored before pushes were checked against the grammar may be
/// such texts. With `.foundationsLegacy`, this parser takes the same ones and reads them as it
/// did: a comma before an object's or an array's end, one byte-order mark before the text, a
/// member named twice (the last one counts), and text in UTF-16 or UTF-32, which Foundation told
/// by where zero bytes fall in its first four. Everything Foundation refuses that the grammar
/// allows (a string that is not UTF-8, or holds a lone surrogate) is refused here too, so that
/// every text Foundation took is read alike (`ParsedJSONTests` compares the two).
public indirect enum ParsedJSON: Sendable, Equatable {
    /// The members in text order, names repeated as the text repeats them.
    case object([Member])
    case array([ParsedJSON])
    case string(String)
    /// The number as written: JSON's numbers have no one binary form.
    case number(String)
    case bool(Bool)
    case null

    public struct Member: Sendable, Equatable {
        public let name: String
        public let value: ParsedJSON
    }

    public enum Grammar: Sendable {
        /// RFC 8259 exactly.
        case strict
        /// What Foundation took on Linux besides, as above: for texts stored before the check.
        case foundationsLegacy
    }

    /// Parses `text`, UTF-8, as one JSON value.
    public init(parsing text: [UInt8], grammar: Grammar) throws(JSONGrammar.Violation) {
        var text = text
        if grammar == .foundationsLegacy, let (wide, mark) = Self.wideEncoding(of: text) { text = try Self.utf8(Array(text.dropFirst(mark)), from: wide) }
        self = try text.withUnsafeBufferPointer { bytes throws(JSONGrammar.Violation) in
            var parser = JSONGrammar.Checker(bytes: bytes, namesKept: false)
            if grammar == .foundationsLegacy, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.at = 3 }
            parser.skipWhitespace()
            let value = try parser.value(depth: 0, trailingCommas: grammar == .foundationsLegacy)
            parser.skipWhitespace()
            guard parser.at == bytes.count else { throw parser.violation("the text goes on after its value") }
            return value
        }
    }

    enum WideEncoding { case utf16(bigEndian: Bool), utf32(bigEndian: Bool) }

    /// The encoding Foundation took a text to be in when not UTF-8, and the length of the
    /// byte-order mark that said so: by that mark, else by where zero bytes fall in its first four
    /// (two, in a shorter text). `nil` for UTF-8, which holds no zero byte outside a string, and
    /// none inside one unescaped. (A text stored as a `String` holds no mark of these, whose bytes
    /// are not UTF-8, but may be UTF-16 or UTF-32 without one.)
    static func wideEncoding(of text: [UInt8]) -> (WideEncoding, mark: Int)? {
        for (mark, encoding) in [([0xFF, 0xFE, 0, 0], WideEncoding.utf32(bigEndian: false)), ([0, 0, 0xFE, 0xFF], .utf32(bigEndian: true)),
                                 ([0xFE, 0xFF], .utf16(bigEndian: true)), ([0xFF, 0xFE], .utf16(bigEndian: false))] as [([UInt8], WideEncoding)]
        where text.starts(with: mark) {
            return (encoding, mark.count)
        }
        let zero = text.prefix(4).map { $0 == 0 }
        if zero.count == 4 {
            switch (zero[0], zero[1], zero[2], zero[3]) {
            case (true, true, true, _): return (.utf32(bigEndian: true), 0)
            case (_, true, true, true): return (.utf32(bigEndian: false), 0)
            case (true, _, true, _): return (.utf16(bigEndian: true), 0)
            case (_, true, _, true): return (.utf16(bigEndian: false), 0)
            default: return nil
            }
        }
        guard zero.count >= 2 else { return nil }
        return zero[0] ? (.utf16(bigEndian: true), 0) : zero[1] ? (.utf16(bigEndian: false), 0) : nil
    }

    /// `text` in UTF-8, from `encoding`; refused when it is not that encoding whole.
    static func utf8(_ text: [UInt8], from encoding: WideEncoding) throws(JSONGrammar.Violation) -> [UInt8] {
        let width: Int, bigEndian: Bool
        switch encoding {
        case .utf16(let big): (width, bigEndian) = (2, big)
        case .utf32(let big): (width, bigEndian) = (4, big)
        }
        guard text.count % width == 0 else { throw JSONGrammar.Violation(offset: text.count, problem: "the text ends inside a UTF-\(width * 8) code unit") }
        let units = stride(from: 0, to: text.count, by: width).map { start in
            (0..<width).reduce(UInt32(0)) { unit, i in unit << 8 | UInt32(text[start + (bigEndian ? i : width - 1 - i)]) }
        }
        var utf8: [UInt8] = []
        let failed = width == 2
            ? transcode(units.lazy.map { UInt16($0) }.makeIterator(), from: UTF16.self, to: UTF8.self, stoppingOnError: true) { utf8.append($0) }
            : transcode(units.makeIterator(), from: UTF32.self, to: UTF8.self, stoppingOnError: true) { utf8.append($0) }
        guard !failed else { throw JSONGrammar.Violation(offset: 0, problem: "the text is not UTF-\(width * 8)") }
        return utf8
    }

    /// The value of the object's member `name` (compared as Swift compares strings, as a
    /// Foundation dictionary's keys were), its last when named twice; `nil` when this is no
    /// object or has none.
    public subscript(member name: String) -> ParsedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.name == name }?.value
    }

    /// The object's member names, each once.
    public var memberNames: [String] { uniqueMembers.map(\.name) }

    /// The object's members, each name once with its value as ``subscript(member:)`` reads it (the
    /// last), in the order the names first appear. Linear in the members: a look-up per name is
    /// quadratic, which a manifest of 300,000 annotations turns into minutes of a core.
    public var uniqueMembers: [(name: String, value: ParsedJSON)] {
        guard case .object(let members) = self else { return [] }
        var index: [String: Int] = [:]
        var unique: [(name: String, value: ParsedJSON)] = []
        for member in members {
            if let at = index[member.name] {
                unique[at].value = member.value
            } else {
                index[member.name] = unique.count
                unique.append((member.name, member.value))
            }
        }
        return unique
    }

    public var string: String? {
        if case .string(let text) = self { text } else { nil }
    }

    public var array: [ParsedJSON]? {
        if case .array(let items) = self { items } else { nil }
    }

    public var isObject: Bool {
        if case .object = self { true } else { false }
    }

    /// Whether this holds a number such as `1e400`, beyond a double's range: RFC 8259 allows it,
    /// but Go's decoders (docker's, containerd's) and Foundation (which read manifests, policies
    /// and request bodies once) refuse the whole text.
    public var holdsANumberBeyondADouble: Bool {
        switch self {
        case .number(let literal): !(Double(literal)?.isFinite ?? false)
        case .array(let items): items.contains(where: \.holdsANumberBeyondADouble)
        case .object(let members): members.contains { $0.value.holdsANumberBeyondADouble }
        case .string, .bool, .null: false
        }
    }

    /// A number written as a whole number (no fraction or exponent) that fits in 64 bits.
    public var integer: Int64? {
        guard case .number(let literal) = self, !literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int64(literal)
    }
}

extension JSONGrammar.Checker {
    /// The value that begins here (its container's loop skips the whitespace after it).
    mutating func value(depth: Int, trailingCommas: Bool) throws(JSONGrammar.Violation) -> ParsedJSON {
        guard at < bytes.count else { throw violation("the text ends where a value must begin") }
        switch bytes[at] {
        case UInt8(ascii: "{"):
            var members: [ParsedJSON.Member] = []
            try elements(closedBy: UInt8(ascii: "}"), of: "object", depth: depth, trailingCommas: trailingCommas) { parser throws(JSONGrammar.Violation) in
                guard parser.peek(UInt8(ascii: "\"")) else { throw parser.violation("a member's name must follow, in quotes") }
                let name = try parser.text()
                parser.skipWhitespace()
                guard parser.peek(UInt8(ascii: ":")) else { throw parser.violation("a colon must follow a member's name") }
                parser.at += 1
                parser.skipWhitespace()
                members.append(ParsedJSON.Member(name: name, value: try parser.value(depth: depth + 1, trailingCommas: trailingCommas)))
            }
            return .object(members)
        case UInt8(ascii: "["):
            var items: [ParsedJSON] = []
            try elements(closedBy: UInt8(ascii: "]"), of: "array", depth: depth, trailingCommas: trailingCommas) { parser throws(JSONGrammar.Violation) in
                items.append(try parser.value(depth: depth + 1, trailingCommas: trailingCommas))
            }
            return .array(items)
        case UInt8(ascii: "\""): return .string(try text())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = at
            try number()
            return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self))
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default: throw violation("no JSON value begins with this byte")
        }
    }

    /// An object's members or an array's items, from its opening bracket through its closing one:
    /// `element` reads each, commas separate them, and with `trailingCommas` one may also end them.
    mutating func elements(
        closedBy end: UInt8, of kind: String, depth: Int, trailingCommas: Bool,
        _ element: (inout Self) throws(JSONGrammar.Violation) -> Void
    ) throws(JSONGrammar.Violation) {
        guard depth < JSONGrammar.maximumDepth else { throw violation("arrays and objects nest deeper than \(JSONGrammar.maximumDepth)") }
        at += 1
        var count = 0
        while true {
            skipWhitespace()
            if peek(end), count == 0 || trailingCommas {
                at += 1
                return
            }
            try element(&self)
            count += 1
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                at += 1
                continue
            }
            guard peek(end) else { throw violation("a comma or the \(kind)'s end must follow a value") }
            at += 1
            return
        }
    }

    /// A string, from its opening quote, with its escapes read: refused unless it is UTF-8 with
    /// no lone surrogate, as Foundation refused it.
    mutating func text() throws(JSONGrammar.Violation) -> String {
        let start = at
        guard let bytes = try string(keeping: true), let text = String(validating: bytes, as: UTF8.self) else {
            throw JSONGrammar.Violation(offset: start, problem: "a string must be UTF-8, with no lone surrogate")
        }
        return text
    }
}
