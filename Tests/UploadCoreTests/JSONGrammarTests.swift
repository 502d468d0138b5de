import Foundation
import JSONGrammar
import Testing

/// RFC 8259's grammar, exactly: what Foundation's parser takes beyond it (trailing commas) is
/// refused, and what it passes Foundation parses too.
struct JSONGrammarTests {
    static let wellFormed = [
        "{}", "[]", #""text""#, "0", "-0", "12.5e-3", "1E+9", "true", "false", "null", " \t\r\n{ } \n",
        #"{"a":[1,{"b":null},"c"],"d":{"e":-1.5}}"#, #"["\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"]"#, #"{"é":"日本"}"#,
        #"{"a":1,"b":{"a":2}}"#, #"[{"a":1},{"a":1}]"#,
    ]

    @Test(arguments: wellFormed)
    func wellFormedTexts_pass_andFoundationParsesThem(text: String) throws {
        try JSONGrammar.check(Array(text.utf8), refusingDuplicateNames: true)
        let parsed = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil
        #expect(parsed)
    }

    @Test(arguments: [
        ("a trailing comma in an object", #"{"a":1,}"#, 7),
        ("a trailing comma in an array", "[1,]", 3),
        ("a nested trailing comma", #"{"a":[1,2,],"b":2}"#, 10),
        ("an empty member", #"{,"a":1}"#, 1),
        ("two commas", "[1,,2]", 3),
        ("a leading zero", "[01]", 2),
        ("a fraction without digits", "[1.]", 3),
        ("a bare fraction", "[.5]", 1),
        ("a plus sign", "[+1]", 1),
        ("an exponent without digits", "[1e]", 3),
        ("NaN", "[NaN]", 1),
        ("single quotes", "{'a':1}", 1),
        ("a comment", "[1 /* x */]", 3),
        ("a raw line feed in a string", "[\"a\nb\"]", 3),
        ("an unknown escape", #"["\x"]"#, 3),
        ("a short unicode escape", #"["\u12"]"#, 6),
        ("a second value", "{} {}", 3),
        ("nothing", "", 0),
        ("only whitespace", "  ", 2),
        ("an unclosed object", #"{"a":1"#, 6),
        ("an unclosed string", #"["abc"#, 5),
        ("a missing colon", #"{"a" 1}"#, 5),
        ("a name that is no string", "{a:1}", 1),
        ("a misspelt literal", "[tru]", 1),
        ("a closing bracket of the wrong kind", #"{"a":1]"#, 6),
        ("a byte-order mark", "\u{FEFF}{}", 0),
    ])
    func textsOutsideTheGrammar_areRefused_atTheirFirstWrongByte(why: String, text: String, offset: Int) {
        let violation = #expect(throws: JSONGrammar.Violation.self, "\(why)") { try JSONGrammar.check(Array(text.utf8)) }
        #expect(violation?.offset == offset, "\(why): \(violation.map(String.init(describing:)) ?? "")")
    }

    @Test func nestingPastTheBound_isRefused() throws {
        let deepest = String(repeating: "[", count: JSONGrammar.maximumDepth) + "0" + String(repeating: "]", count: JSONGrammar.maximumDepth)
        try JSONGrammar.check(Array(deepest.utf8))
        let deeper = "[" + deepest + "]"
        #expect(throws: JSONGrammar.Violation.self) { try JSONGrammar.check(Array(deeper.utf8)) }
    }

    /// A name given twice, however it is spelt, is refused when asked; names in different
    /// objects, or the same text as a value, are not twice.
    @Test(arguments: [
        #"{"a":1,"a":2}"#, #"{"a":1,"\u0061":2}"#, #"{"é":1,"\u00E9":2}"#, #"{"😀":1,"\uD83D\uDE00":2}"#,
        #"{"x":{"layers":[],"layers":[{"digest":"d"}]}}"#, #"[{"a":1,"b":{},"a":3}]"#,
    ])
    func aNameGivenTwice_isRefusedWhenAsked(text: String) throws {
        try JSONGrammar.check(Array(text.utf8))
        #expect(throws: JSONGrammar.Violation.self) { try JSONGrammar.check(Array(text.utf8), refusingDuplicateNames: true) }
    }

    @Test func namesThatDiffer_orRepeatInAnotherObject_areNotDuplicates() throws {
        try JSONGrammar.check(Array(#"{"a":"a","A":{"a":1},"b":[{"a":1}],"\uD83D":1,"\uD83D\uDE00":2}"#.utf8), refusingDuplicateNames: true)
    }
}
