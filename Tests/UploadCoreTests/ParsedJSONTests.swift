import Foundation
import JSONGrammar
import Testing
import UploadTesting

/// `ParsedJSON`, which reads stored manifests for the projector, reads every text Foundation's
/// `JSONSerialization` took (which read them before, and may have stored texts RFC 8259 refuses)
/// as Foundation read it, so that replaying a log on another toolchain changes no projection.
struct ParsedJSONTests {
    /// A reading of a text, to compare: objects as a dictionary (a name given twice counts its
    /// last value), numbers by the whole number the manifest reader takes (non-negative, 64-bit,
    /// written without fraction or exponent). Not by their value as a Double: Foundation's
    /// differs from the correctly rounded one in the last digits of long fractions (a reason to
    /// read manifests without it), and no manifest field read is a fraction.
    indirect enum Reading: Equatable {
        case object([String: Reading]), array([Reading]), string(String), number(whole: Int64?), bool(Bool), null
    }

    static func reading(_ value: Any) -> Reading {
        switch value {
        case let object as [String: Any]: .object(object.mapValues(reading))
        case let array as [Any]: .array(array.map(reading))
        case let text as String: .string(text)
        case let number as NSNumber:
            switch String(cString: number.objCType) {
            case "c": .bool(number.boolValue)
            case "d", "f": .number(whole: nil)
            default: .number(whole: Int64(number.stringValue).flatMap { $0 >= 0 ? $0 : nil })
            }
        case is NSNull: .null
        default: .string("unexpected \(type(of: value))")
        }
    }

    static func reading(_ value: ParsedJSON) -> Reading {
        switch value {
        case .object(let members): .object(Dictionary(members.map { ($0.name, reading($0.value)) }) { _, last in last })
        case .array(let items): .array(items.map(reading))
        case .string(let text): .string(text)
        case .number: .number(whole: value.integer.flatMap { $0 >= 0 ? $0 : nil })
        case .bool(let flag): .bool(flag)
        case .null: .null
        }
    }

    /// Texts at each edge Foundation's parser has on Linux: what it takes beyond RFC 8259, and
    /// what the grammar allows that it refuses.
    static let edges: [[UInt8]] = [
        #"{"a":1,"a":2}"#, #"{"a":1,}"#, "[1,2,]", #"{"a":[1,],"b":{"c":2,},}"#, #"{"a":1 ,}"#, "{\"a\":1,\n}", "[,]", "{,}", #"{"a":1,,}"#,
        "\u{FEFF}{\"a\":1}", "\u{FEFF}\u{FEFF}{}", " \u{FEFF}{}", #"{"a":01}"#, #"{"a":+1}"#, #"{"a":.5}"#, #"{"a":1.}"#, #"{"a":-}"#,
        #"{"a":1e5}"#, #"{"a":1E2}"#, #"{"a":1e+5}"#, #"{"a":-0}"#, #"{"a":1.0}"#, #"{"a":2.000}"#, #"{"a":100e-2}"#, #"{"a":1e400}"#,
        #"{"a":9223372036854775807}"#, #"{"a":9223372036854775808}"#, #"{"a":-9223372036854775808}"#, #"{"a":123456789012345678901234567890}"#,
        #"{"a":"\ud800"}"#, #"{"a":"\uDE00\uD83D"}"#, #"{"a":"\uD83D\uDE00"}"#, #"{"a":"\u0000"}"#, "{\"a\":\"\u{01}\"}", "{\"a\":\"\u{7F}\"}",
        #"{"\u00e9":1,"é":2}"#, #"{"e\u0301":1,"é":2}"#, "{'a':1}", #"{"a":1}//c"#, "{\"a\":1}\u{0C}", #"{"a":NaN}"#, #"{"a":tru}"#,
        #"{"a":true,"b":false,"c":null}"#, #"{"a":1} x"#, "{\"a\":1}\0", "\t{\"a\":1}\r\n", #"{"a":"\x"}"#,
    ].map { Array($0.utf8) } + [
        Array(#"{"a":""#.utf8) + [0xFF] + Array(#""}"#.utf8), Array(#"{"a":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8),
        Array(#"{"a":""#.utf8) + [0xC0, 0x80] + Array(#""}"#.utf8),
    ] + [#"{"a":[1,2,],"b":"x"}"#, "1", "[1]"].flatMap { text in
        [String.Encoding.utf16LittleEndian, .utf16BigEndian, .utf32LittleEndian, .utf32BigEndian].map { Array(text.data(using: $0)!) }
    } + [[0x31, 0], [0, 0x31], [0x31, 0x32, 0], [0x7B, 0, 0x7D], [0, 0x31, 0x31, 0x31], [0, 0, 0x31, 0]] + [511, 512].map { depth in Array(("{\"a\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}").utf8) }

    /// Texts made at random from the pieces manifests and those edges are made of, some then
    /// damaged a byte at a time.
    static func madeTexts(count: Int, seed: UInt64) -> [[UInt8]] {
        var random = SplitMix64(state: seed)
        let names = [#""mediaType""#, #""digest""#, #""size""#, #""a""#, #""\u0061""#, #""é""#, #""e\u0301""#, #""""#, #""\ud83d\ude00""#]
        let scalars = ["0", "-0", "7", "-12", "2.5", "1e3", "1E-2", "9223372036854775807", "9223372036854775808", "true", "false", "null",
                       #""sha256:ab""#, #""\n\t\"\\\/""#, #""日本""#, #""\u00e9""#]
        func value(_ depth: Int) -> String {
            switch depth < 4 ? random.next(6) : 5 {
            case 0, 1:
                let members = (0..<random.next(4)).map { _ in names[random.next(names.count)] + ":" + value(depth + 1) }
                return "{" + members.joined(separator: random.next(4) == 0 ? " , " : ",") + (random.next(6) == 0 && !members.isEmpty ? "," : "") + "}"
            case 2:
                let items = (0..<random.next(4)).map { _ in value(depth + 1) }
                return "[" + items.joined(separator: ",\n") + (random.next(6) == 0 && !items.isEmpty ? "," : "") + "]"
            default: return scalars[random.next(scalars.count)]
            }
        }
        return (0..<count).map { _ in
            var text = Array(((random.next(10) == 0 ? "\u{FEFF}" : "") + value(0)).utf8)
            for _ in 0..<(random.next(3) == 0 ? 1 + random.next(2) : 0) {
                let at = random.next(text.count + 1)
                switch random.next(3) {
                case 0 where at < text.count: text.remove(at: at)
                case 1 where at < text.count: text[at] = [0x2C, 0x5D, 0x7D, 0x22, 0x5C, 0xFF, 0x20, 0x30][random.next(8)]
                default: text.insert([0x2C, 0x5D, 0x7D, 0x22, 0x5C, 0x2E, 0x65][random.next(7)], at: at)
                }
            }
            // Some in UTF-16 or UTF-32, as Foundation also read them.
            if random.next(10) == 0, let string = String(validating: text, as: UTF8.self) {
                let encodings: [String.Encoding] = [.utf16LittleEndian, .utf16BigEndian, .utf32LittleEndian, .utf32BigEndian]
                text = Array(string.data(using: encodings[random.next(4)])!)
            }
            return text
        }
    }

    /// Every text Foundation takes is taken, and read alike; the grammar it replaces for manifests
    /// stored before the RFC 8259 check is Foundation's own, so none is read otherwise now.
    @Test func everyTextFoundationTakes_isReadAlike() throws {
        var taken = 0, refused = 0
        for text in Self.edges + Self.madeTexts(count: 20_000, seed: 11) {
            guard let foundation = try? JSONSerialization.jsonObject(with: Data(text), options: [.fragmentsAllowed]) else {
                refused += 1
                continue
            }
            taken += 1
            let ours = try? ParsedJSON(parsing: text, grammar: .foundationsLegacy)
            #expect(ours.map(Self.reading) == Self.reading(foundation), "\(String(decoding: text, as: UTF8.self).debugDescription)")
        }
        // The corpus reaches both sides of the edge.
        #expect(taken > 5_000 && refused > 2_000, "taken \(taken), refused \(refused)")
    }

    /// What Foundation refused that the grammar allows is refused too (a string that is not
    /// UTF-8, or a lone surrogate): every text it refused, but these and the grammar's extra
    /// numbers (an overflowing exponent), was refused by the manifest reader before.
    @Test(arguments: [
        #"{"a":"\ud800"}"#, #"{"a":"\uDE00\uD83D"}"#,
    ])
    func aLoneSurrogate_isRefused(text: String) {
        #expect(throws: JSONGrammar.Violation.self) { try ParsedJSON(parsing: Array(text.utf8), grammar: .foundationsLegacy) }
    }

    @Test func aStringThatIsNotUTF8_isRefused() {
        let text = Array(#"{"a":""#.utf8) + [0xFF] + Array(#""}"#.utf8)
        #expect(throws: JSONGrammar.Violation.self) { try ParsedJSON(parsing: text, grammar: .strict) }
    }

    /// The strict grammar takes only what RFC 8259 allows: no trailing comma, no byte-order mark.
    @Test func theStrictGrammar_takesNothingTheCheckerRefuses() throws {
        var accepted = 0
        for text in Self.edges + Self.madeTexts(count: 5_000, seed: 12) {
            guard (try? ParsedJSON(parsing: text, grammar: .strict)) != nil else { continue }
            accepted += 1
            #expect(throws: Never.self, "\(String(decoding: text, as: UTF8.self).debugDescription)") { try JSONGrammar.check(text) }
        }
        #expect(accepted > 1_000, "the texts the strict grammar took: enough that the loop tested something")
        for text in [#"{"a":1,}"#, "[1,]", "\u{FEFF}{}"] {
            #expect(throws: JSONGrammar.Violation.self) { try ParsedJSON(parsing: Array(text.utf8), grammar: .strict) }
            #expect(throws: Never.self) { try ParsedJSON(parsing: Array(text.utf8), grammar: .foundationsLegacy) }
        }
    }

    @Test func aMemberNamedTwice_isReadAsItsLast_andListedOnce() throws {
        let object = try ParsedJSON(parsing: Array(#"{"a":1,"b":2,"a":3}"#.utf8), grammar: .foundationsLegacy)
        #expect(object[member: "a"] == .number("3"))
        #expect(object.memberNames == ["a", "b"])
        #expect(object.uniqueMembers.map(\.name) == ["a", "b"] && object.uniqueMembers.map(\.value) == [.number("3"), .number("2")])
        #expect(object[member: "c"] == nil && ParsedJSON.null[member: "a"] == nil && ParsedJSON.null.uniqueMembers.isEmpty)
        // Names equal as Swift strings (a composed and a decomposed é) are one name, as the subscript reads them.
        let composed = try ParsedJSON(parsing: Array("{\"\u{E9}\":1,\"e\u{301}\":2}".utf8), grammar: .foundationsLegacy)
        #expect(composed.uniqueMembers.count == 1 && composed.uniqueMembers[0].value == composed[member: "\u{E9}"])
    }

    /// Every member of a large object read once: a look-up per name made a manifest of 300,000
    /// annotations cost minutes of a core. Eight times the members must cost about eight times
    /// as much (quadratic work would be 64 times); bounded generously (32 times, the larger object
    /// spilling out of the caches), relative to the same run, the fastest of five of each.
    @Test func readingEveryMember_isLinearInTheMembers() throws {
        func reading(_ count: Int) throws -> () -> Void {
            let text = "{" + (0..<count).map { "\"k\($0)\":\"\($0)\"" }.joined(separator: ",") + "}"
            let object = try ParsedJSON(parsing: Array(text.utf8), grammar: .foundationsLegacy)
            return { #expect(object.uniqueMembers.count == count) }
        }
        let (small, large) = GrowthTiming.fastest(small: try reading(20_000), large: try reading(160_000))
        #expect(large < max(small, .milliseconds(1)) * 32, "20,000 members took \(small), 160,000 took \(large)")
    }
}
