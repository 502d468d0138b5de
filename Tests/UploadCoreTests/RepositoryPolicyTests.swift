import Foundation
import Testing
@testable import UploadCore

/// Repository policies: what is accepted, and how a call is judged (IAM's rules for a resource policy).
struct RepositoryPolicyTests {
    static let owner = "000000000000"
    static let resource = "arn:aws:ecr-public::000000000000:repository/team/app"
    static let alice = PolicyPrincipal(registryId: owner, name: "alice")
    static let bob = PolicyPrincipal(registryId: owner, name: "bob")
    static let carol = PolicyPrincipal(registryId: "111111111111", name: "carol")

    static func policy(_ statements: String) throws -> RepositoryPolicy {
        try RepositoryPolicy(#"{"Version":"2012-10-17","Statement":\#(statements)}"#)
    }

    static func allows(_ policy: RepositoryPolicy, _ caller: PolicyPrincipal?, _ action: String) -> Bool {
        policy.allows(caller, action: "ecr-public:" + action, resource: resource, owner: owner)
    }

    /// An unreadable default: a public pull is allowed to anyone a Deny does not name.
    @Test func byDefault_isTheAnswerWhenNoStatementNamesTheCall() throws {
        let policy = try Self.policy(#"{"Effect":"Deny","Principal":{"AWS":"111111111111"},"Action":"ecr-public:BatchGetImage"}"#)
        let other = PolicyPrincipal(registryId: "222222222222", name: "dan")
        #expect(policy.allows(other, action: "ecr-public:BatchGetImage", resource: Self.resource, owner: Self.owner, byDefault: true))
        #expect(!policy.allows(Self.carol, action: "ecr-public:BatchGetImage", resource: Self.resource, owner: Self.owner, byDefault: true))
        #expect(!Self.allows(policy, other, "BatchGetImage"))
    }

    @Test func ownKeys_areAllowed_untilADenyNamesThem_andADenyWins() throws {
        let policy = try Self.policy(#"[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":["ecr-public:Put*","ecr-public:InitiateLayerUpload"]}]"#)
        #expect(!Self.allows(policy, Self.bob, "PutImage"))
        #expect(!Self.allows(policy, Self.bob, "InitiateLayerUpload"))
        #expect(Self.allows(policy, Self.bob, "UploadLayerPart"))
        #expect(Self.allows(policy, Self.alice, "PutImage"))
        #expect(Self.allows(policy, nil, "PutImage"), "anonymous is named by * only")
        let everyone = try Self.policy(#"{"Effect":"Deny","Principal":"*","Action":"ecr-public:putimage"}"#)
        #expect(!Self.allows(everyone, Self.alice, "PutImage") && !Self.allows(everyone, nil, "PutImage"), "actions match without case")
    }

    /// A principal is named by its bytes: a user spelled with other, canonically equivalent
    /// scalars (é as one scalar, or as e and a combining accent) is another user.
    @Test func aPrincipal_isNamedByItsBytes_notByCanonicalEquivalence() throws {
        let composed = PolicyPrincipal(registryId: Self.owner, name: "ren\u{e9}")
        let decomposed = PolicyPrincipal(registryId: Self.owner, name: "rene\u{301}")
        let policy = try Self.policy(#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/ren\#u{e9}"},"Action":"ecr-public:PutImage"}"#)
        #expect(!Self.allows(policy, composed, "PutImage"))
        #expect(Self.allows(policy, decomposed, "PutImage"))
    }

    @Test func otherRegistries_needAnAllow_andADenyStillWins() throws {
        #expect(!Self.allows(try Self.policy(#"[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"ecr-public:*"}]"#), Self.carol, "PutImage"))
        for principal in [#""arn:aws:iam::111111111111:user/carol""#, #""111111111111""#, #""arn:aws:iam::111111111111:root""#, #"["arn:aws:iam::000000000000:user/bob","111111111111"]"#, #""*""#] {
            let policy = try Self.policy(#"{"Effect":"Allow","Principal":{"AWS":\#(principal)},"Action":"ecr-public:*","Resource":"arn:aws:ecr-public::000000000000:repository/team/*"}"#)
            #expect(Self.allows(policy, Self.carol, "PutImage"), "\(principal)")
        }
        let both = try Self.policy(#"[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"ecr-public:*"},{"Effect":"Deny","Principal":{"AWS":"111111111111"},"Action":"ecr-public:PutImage"}]"#)
        #expect(Self.allows(both, Self.carol, "InitiateLayerUpload") && !Self.allows(both, Self.carol, "PutImage"))
        let elsewhere = try Self.policy(#"{"Effect":"Allow","Principal":"*","Action":"ecr-public:*","Resource":"arn:aws:ecr-public::000000000000:repository/other"}"#)
        #expect(!Self.allows(elsewhere, Self.carol, "PutImage"), "a statement for another resource does not apply")
    }

    @Test(arguments: [
        "not json", #"{"Version":"2012-10-17"}"#, #"{"Statement":[]}"#,
        #"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Allow","Action":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*","Condition":{}}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":"*","NotAction":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":{"AWS":"not-an-arn"},"Action":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":{"Service":"ecs.amazonaws.com"},"Action":"ecr-public:*"}}"#,
        #"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr-public:DescribeRepositories"}}"#,
        #"{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/*"},"Action":"ecr-public:*"}}"#,
    ])
    func aPolicyThisCoordinatorCannotEnforce_isRefused(text: String) {
        let error = #expect(throws: CommandError.self) { try RepositoryPolicy(text) }
        #expect(error?.code == .invalidParameter)
    }

    @Test(arguments: [
        #"{"Statement":{"Sid":1,"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":"*","Action":["ecr-public:*",1]}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}"#,
        #"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*","Other":"*"},"Action":"ecr-public:*"}}"#,
        #"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"},"x"]}"#,
        #"{"Statement":"x"}"#, #"["Statement"]"#,
        #"{"Id":1e400,"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#,
    ])
    func aPolicyOfTheWrongShape_isRefused(text: String) {
        let error = #expect(throws: CommandError.self) { try RepositoryPolicy(text) }
        #expect(error?.code == .invalidParameter)
    }

    /// A policy stored before texts were read without Foundation is read as Foundation read it:
    /// a trailing comma taken, and of a member given twice, the last.
    @Test func aStoredPolicyInFoundationsGrammar_isReadAsFoundationReadIt() throws {
        let policy = try RepositoryPolicy(#"{"Statement":{"Effect":"Allow","Effect":"Deny","Principal":{"AWS":"*","AWS":"*"},"Action":["ecr-public:PutImage",],},}"#)
        #expect(policy.statements.map(\.effect) == [.deny])
        #expect(!Self.allows(policy, Self.carol, "PutImage"))
    }

    /// A refusal names the first member it refuses in byte order, not in the dictionary's order
    /// (seeded per process): the same text is refused the same way by every process.
    @Test func aPolicyWithSeveralUnknownMembers_isRefusedNamingTheFirstInByteOrder() throws {
        let members = (0..<20).map { "X\(Character(UnicodeScalar(UInt8(ascii: "t") - UInt8($0))))" }
        let top = members.map { "\"\($0)\":1" }.joined(separator: ",")
        let statement = members.map { "\"\($0)\":1" }.joined(separator: ",")
        for (text, refused) in [
            (#"{\#(top),"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#, "the member 'Xa'"),
            (#"{"Statement":{\#(statement),"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#, "has 'Xa' in Statement[0]"),
        ] {
            let error = #expect(throws: CommandError.self) { try RepositoryPolicy(text) }
            #expect(error?.message.contains(refused) == true, "\(error?.message ?? "")")
        }
    }

    @Test func theLongestPolicy_is10240Characters() throws {
        let base = #"{"Statement":{"Sid":"","Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#
        let padded = base.replacingOccurrences(of: #""Sid":"""#, with: #""Sid":""# + String(repeating: "s", count: 10_240 - base.count) + #"""#)
        #expect(padded.count == 10_240)
        _ = try RepositoryPolicy(padded)
        #expect(throws: CommandError.self) { try RepositoryPolicy(padded.replacingOccurrences(of: "\"Sid\":\"", with: "\"Sid\":\"s")) }
    }

    @Test(arguments: [("ecr-public:put*", "ecr-public:putimage", true), ("ecr-public:?utimage", "ecr-public:putimage", true),
                      ("*", "x", true), ("a*b*c", "aXbYc", true), ("a*b", "ab", true), ("a*b", "ac", false), ("ab", "abc", false)])
    func wildcards_matchAsIAMDoes(pattern: String, text: String, matches: Bool) {
        #expect(RepositoryPolicy.matches(text, pattern: pattern) == matches)
    }
}
