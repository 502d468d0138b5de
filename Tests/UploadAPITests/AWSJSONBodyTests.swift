import Foundation
import Testing
@testable import AWSJSON

/// The large-member short cut must read every body exactly as the general JSON parser does, or
/// step aside: these bodies carry a member of at least 64 KiB, where it applies.
struct AWSJSONBodyTests {
    static let blob = String(repeating: "QUJD", count: 20_000)  // 80,000 bytes of base64

    /// What JSONSerialization alone makes of `member` in `body`; `nil` when it refuses the body.
    static func general(_ body: [UInt8], _ member: String) -> String?? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        return .some(object[member] as? String)
    }

    @Test(arguments: [
        #"{"uploadId":"u","layerPartBlob":"BLOB","partFirstByte":0}"#,
        #" { "layerPartBlob" : "BLOB" , "nested" : {"a":[1,2,{"b":"c\"}"}]}, "n": -1.5e3, "t": true, "z": null } "#,
        #"{"a":"BLOB","b":"BLOB"}"#,
    ])
    func plainLongStrings_areLifted_andReadAsTheGeneralParserReadsThem(_ template: String) throws {
        let body = Array(template.replacingOccurrences(of: "BLOB", with: Self.blob).utf8)
        #expect(LargeStringMembers.lift(body) != nil, "the short cut applies")
        let parsed = try AWSJSONBody(body)
        for member in ["layerPartBlob", "a", "b", "uploadId"] where template.contains("\"\(member)\"") {
            #expect(try parsed.string(member) == Self.general(body, member)!, "\(member)")
        }
    }

    /// Foundation's parser takes trailing commas; AWS JSON is RFC 8259's, so they are refused.
    @Test(arguments: [#"{"repositoryName":"team/app",}"#, #"{"repositoryName":"team/app","maxResults":[1,]}"#, #"{"a":1} x"#])
    func aBodyOutsideJSONsGrammar_isASerializationError(body: String) {
        #expect(throws: SerializationError.self) { try AWSJSONBody(Array(body.utf8)) }
    }

    /// A body of very many values (an unknown member of numbers, say) is refused before the
    /// general parser boxes each one; ECR's largest lists, and commas and brackets in strings, pass.
    @Test func aBodyOfMoreValuesThanAnyRequestHolds_isRefusedUnparsed() throws {
        func body(_ count: Int, _ item: String) -> [UInt8] {
            Array((#"{"repositoryName":"team/app","extra":["# + Array(repeating: item, count: count).joined(separator: ",") + "]}").utf8)
        }
        #expect(try AWSJSONBody(body(AWSJSONBody.maximumValues - 10, "1")).string("repositoryName") == "team/app")
        #expect(throws: SerializationError("The request body holds more than 10000 JSON values")) {
            try AWSJSONBody(body(AWSJSONBody.maximumValues, "1"))
        }
        let tags = (0..<200).map { #"{"Key":"k\#($0)","Value":"a,[{\"b"}"# }
        #expect(try AWSJSONBody(Array((#"{"tags":["# + tags.joined(separator: ",") + "]}").utf8)).objects("tags", stringMembers: ["Key"])?.count == 200)
        let commasInAString = #"{"policyText":""# + String(repeating: ",[{", count: 20_000) + #""}"#
        #expect(try AWSJSONBody(Array(commasInAString.utf8)).string("policyText")?.count == 60_000)
    }

    /// The protocol's bodies are UTF-8; Foundation alone would read UTF-16 and a byte-order mark too.
    @Test func bodiesInAnyEncodingButUTF8_areRefused() throws {
        let text = #"{"repositoryName":"team/app"}"#
        #expect(try AWSJSONBody(Array(text.utf8)).string("repositoryName") == "team/app")
        let utf16 = Array(text.data(using: .utf16LittleEndian)!)
        #expect(Self.general(utf16, "repositoryName") != nil, "Foundation reads it")
        #expect(throws: (any Error).self) { try AWSJSONBody(utf16) }
        #expect(throws: (any Error).self) { try AWSJSONBody([0xEF, 0xBB, 0xBF] + Array(text.utf8)) }
    }

    @Test(arguments: [
        (#"{"layerPartBlob":"BLOB\/x"}"#, "an escape in the long string"),
        (#"{"layerPartBlob":"BLOB","layerPartBlob":"BLOB"}"#, "a repeated member name"),
        (#"{"layerPartBlob":"BLOB""#, "a cut-off document"),
        (#"[{"layerPartBlob":"BLOB"}]"#, "not an object"),
        (#"{"layerPartBlob":"BLOB"} x"#, "trailing bytes"),
        (#"{"layerPartBlob":"BLOB\#u{01}"}"#, "a raw control character"),
    ])
    func anythingElse_goesToTheGeneralParser_withTheSameResult(_ template: String, _ what: String) {
        let body = Array(template.replacingOccurrences(of: "BLOB", with: Self.blob).utf8)
        #expect(LargeStringMembers.lift(body) == nil, "\(what): no short cut")
        let general = Self.general(body, "layerPartBlob")
        let ours = try? AWSJSONBody(body).string("layerPartBlob")
        #expect(ours == general.flatMap { $0 }, "\(what): same value or same refusal")
        if general == nil { #expect(throws: SerializationError.self) { try AWSJSONBody(body) } }
    }

    @Test func invalidUTF8_inALongString_isRefusedAsTheGeneralParserRefusesIt() {
        var body = Array(#"{"layerPartBlob":""#.utf8) + Array(Self.blob.utf8)
        body += [0xff, 0xfe] + Array(#""}"#.utf8)
        #expect(throws: SerializationError.self) { try AWSJSONBody(body) }
        #expect(Self.general(body, "layerPartBlob") == nil)
    }

    @Test func aLiftedMember_keepsItsType_forTheOtherAccessors() throws {
        let body = Array(#"{"partFirstByte":"\#(Self.blob)"}"#.utf8)
        #expect(throws: SerializationError.self) { try AWSJSONBody(body).int64("partFirstByte") }
    }
}
