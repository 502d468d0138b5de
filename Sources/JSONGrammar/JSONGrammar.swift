/// RFC 8259's grammar, checked exactly, before Foundation parses a text.
///
/// Foundation's parsers on Linux (`JSONSerialization`, and `JSONDecoder`) take texts the grammar
/// refuses, trailing commas among them (`{"a":1,}`, `[1,]`). A manifest stored so could be
/// pushed but never pulled (Go's, Python's and serde's decoders refuse it), and a request body so
/// is no AWS JSON. Foundation parses only what this has passed.
public enum JSONGrammar {
    /// Why a text is not one JSON value, and where.
    public struct Violation: Error, Equatable, CustomStringConvertible {
        /// The offset of the first byte the grammar does not allow there.
        public let offset: Int
        public let problem: String
        public var description: String { "\(problem) at byte \(offset)" }
    }

    /// The deepest nesting of arrays and objects taken: far past any manifest or request, and a
    /// bound on the checker's own stack of open names.
    public static let maximumDepth = 512

    /// Whether `document` holds more than `limit` values, counted as the separators and openings
    /// outside strings (an upper bound of its values, less one), without parsing it: a parsed
    /// value takes tens of bytes and some work, so a text of many small ones is refused first.
    public static func holdsMoreValues(than limit: Int, _ document: [UInt8]) -> Bool {
        document.withUnsafeBufferPointer { bytes in
            var (count, inString, escaped) = (0, false, false)
            for byte in bytes {
                if inString {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: ","), UInt8(ascii: "["), UInt8(ascii: "{"):
                    count += 1
                    if count >= limit { return true }
                default: break
                }
            }
            return false
        }
    }

    /// Checks that `text` is exactly one JSON value (RFC 8259 §2), with whitespace around it.
    /// - Parameter refusingDuplicateNames: also refuses an object that names a member twice,
    ///   names compared after their escapes are read. RFC 8259 §4 leaves such an object to each
    ///   reader: Go's and Python's take the last value, serde refuses the document, so a manifest
    ///   that has one is read differently by different clients.
    public static func check(_ text: [UInt8], refusingDuplicateNames: Bool = false) throws(Violation) {
        try text.withUnsafeBufferPointer { bytes throws(Violation) in
            var checker = Checker(bytes: bytes, namesKept: refusingDuplicateNames)
            try checker.document()
        }
    }

    struct Checker {
        let bytes: UnsafeBufferPointer<UInt8>
        let namesKept: Bool
        var at = 0
        /// The open containers, innermost last: `true` for an object, `false` for an array.
        var open: [Bool] = []
        /// Each open object's names so far, innermost last, when duplicates are refused.
        var names: [Set<[UInt8]>] = []

        init(bytes: UnsafeBufferPointer<UInt8>, namesKept: Bool) {
            self.bytes = bytes
            self.namesKept = namesKept
        }

        mutating func document() throws(Violation) {
            skipWhitespace()
            value: while true {
                // A value begins here.
                guard at < bytes.count else { throw violation("the text ends where a value must begin") }
                switch bytes[at] {
                case UInt8(ascii: "{"):
                    at += 1
                    skipWhitespace()
                    if peek(UInt8(ascii: "}")) {
                        at += 1
                    } else {
                        try enter(object: true)
                        try memberName()
                        continue value
                    }
                case UInt8(ascii: "["):
                    at += 1
                    skipWhitespace()
                    if peek(UInt8(ascii: "]")) {
                        at += 1
                    } else {
                        try enter(object: false)
                        continue value
                    }
                case UInt8(ascii: "\""): _ = try string(keeping: false)
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
                case UInt8(ascii: "t"): try literal("true")
                case UInt8(ascii: "f"): try literal("false")
                case UInt8(ascii: "n"): try literal("null")
                default: throw violation("no JSON value begins with this byte")
                }
                // A value has ended: a comma and the next, or the end of its container.
                while true {
                    skipWhitespace()
                    guard let isObject = open.last else {
                        guard at == bytes.count else { throw violation("the text goes on after its value") }
                        return
                    }
                    guard at < bytes.count else { throw violation("the text ends inside an \(isObject ? "object" : "array")") }
                    if bytes[at] == UInt8(ascii: ",") {
                        at += 1
                        skipWhitespace()
                        if isObject { try memberName() }
                        continue value
                    }
                    guard bytes[at] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else {
                        throw violation("a comma or the \(isObject ? "object" : "array")'s end must follow a value")
                    }
                    at += 1
                    open.removeLast()
                    if isObject && namesKept { names.removeLast() }
                }
            }
        }

        mutating func enter(object: Bool) throws(Violation) {
            guard open.count < JSONGrammar.maximumDepth else { throw violation("arrays and objects nest deeper than \(JSONGrammar.maximumDepth)") }
            open.append(object)
            if object && namesKept { names.append([]) }
        }

        /// A member's name and its colon; the value follows.
        mutating func memberName() throws(Violation) {
            guard peek(UInt8(ascii: "\"")) else { throw violation("a member's name must follow, in quotes") }
            let start = at
            let name = try string(keeping: namesKept)
            if let name, !names[names.count - 1].insert(name).inserted {
                throw Violation(offset: start, problem: "an object names this member twice")
            }
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw violation("a colon must follow a member's name") }
            at += 1
            skipWhitespace()
        }

        /// A string, from its opening quote; its text in UTF-8 with escapes read, when `keeping`
        /// (a lone surrogate kept as the three bytes it would take, so that names still compare).
        mutating func string(keeping: Bool) throws(Violation) -> [UInt8]? {
            at += 1
            var text: [UInt8]? = keeping ? [] : nil
            while at < bytes.count {
                let byte = bytes[at]
                if byte == UInt8(ascii: "\"") {
                    at += 1
                    return text
                }
                guard byte >= 0x20 else { throw violation("a control character must be escaped in a string") }
                guard byte == UInt8(ascii: "\\") else {
                    text?.append(byte)
                    at += 1
                    continue
                }
                guard at + 1 < bytes.count else { break }
                let escaped = bytes[at + 1]
                guard escaped == UInt8(ascii: "u") else {
                    guard let unescaped = Self.escapes[escaped] else {
                        at += 1
                        throw violation("no such escape in a string")
                    }
                    text?.append(unescaped)
                    at += 2
                    continue
                }
                var unit = try hexUnit(at + 2)
                at += 6
                // A surrogate pair, escaped as two units, is one character.
                if (0xD800..<0xDC00).contains(unit), at + 1 < bytes.count, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") {
                    let low = try hexUnit(at + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        at += 6
                    }
                }
                text?.append(contentsOf: Self.utf8(unit))
            }
            throw violation("the text ends inside a string")
        }

        /// The one-letter escapes and what they stand for.
        static let escapes: [UInt8: UInt8] = [
            UInt8(ascii: "\""): UInt8(ascii: "\""), UInt8(ascii: "\\"): UInt8(ascii: "\\"), UInt8(ascii: "/"): UInt8(ascii: "/"),
            UInt8(ascii: "b"): 0x08, UInt8(ascii: "f"): 0x0C, UInt8(ascii: "n"): 0x0A, UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
        ]

        /// The four hex digits of a `\u` escape starting at `from`.
        func hexUnit(_ from: Int) throws(Violation) -> UInt32 {
            guard from + 4 <= bytes.count else { throw Violation(offset: from, problem: "a \\u escape needs four hex digits") }
            var unit: UInt32 = 0
            for i in from..<from + 4 {
                let digit: UInt8
                switch bytes[i] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = bytes[i] - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = bytes[i] - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = bytes[i] - UInt8(ascii: "A") + 10
                default: throw Violation(offset: i, problem: "a \\u escape needs four hex digits")
                }
                unit = unit << 4 | UInt32(digit)
            }
            return unit
        }

        static func utf8(_ scalar: UInt32) -> [UInt8] {
            switch scalar {
            case ..<0x80: [UInt8(scalar)]
            case ..<0x800: [UInt8(0xC0 | scalar >> 6), UInt8(0x80 | scalar & 0x3F)]
            case ..<0x10000: [UInt8(0xE0 | scalar >> 12), UInt8(0x80 | scalar >> 6 & 0x3F), UInt8(0x80 | scalar & 0x3F)]
            default: [UInt8(0xF0 | scalar >> 18), UInt8(0x80 | scalar >> 12 & 0x3F), UInt8(0x80 | scalar >> 6 & 0x3F), UInt8(0x80 | scalar & 0x3F)]
            }
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        mutating func number() throws(Violation) {
            if peek(UInt8(ascii: "-")) { at += 1 }
            if peek(UInt8(ascii: "0")) {
                at += 1
            } else {
                guard digits() > 0 else { throw violation("a number needs a digit here") }
            }
            if peek(UInt8(ascii: ".")) {
                at += 1
                guard digits() > 0 else { throw violation("a number's fraction needs a digit") }
            }
            if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
                at += 1
                if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { at += 1 }
                guard digits() > 0 else { throw violation("a number's exponent needs a digit") }
            }
        }

        mutating func digits() -> Int {
            let start = at
            while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) { at += 1 }
            return at - start
        }

        mutating func literal(_ word: StaticString) throws(Violation) {
            let length = word.utf8CodeUnitCount
            guard at + length <= bytes.count, UnsafeBufferPointer(start: word.utf8Start, count: length).elementsEqual(bytes[at..<at + length]) else {
                throw violation("no JSON value begins with this byte")
            }
            at += length
        }

        func peek(_ byte: UInt8) -> Bool { at < bytes.count && bytes[at] == byte }

        /// RFC 8259's whitespace: space, tab, line feed, carriage return.
        mutating func skipWhitespace() {
            while at < bytes.count {
                switch bytes[at] {
                case 0x20, 0x09, 0x0A, 0x0D: at += 1
                default: return
                }
            }
        }

        func violation(_ problem: String) -> Violation { Violation(offset: at, problem: problem) }
    }
}
