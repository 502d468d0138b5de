import Foundation
import HTTPTypes
import Testing
@testable import UploadAPI
@testable import UploadCore
import UploadTesting

/// SigV4 against a request awscli really signed (captured in shared/reference/ecr-public-api.md §3),
/// and against every way a request can be wrong.
struct SigV4Tests {
    static let body = Array(#"{"repositoryName": "team/app", "uploadId": "11111111-2222-3333-4444-555555555555", "partFirstByte": 0, "partLastByte": 16, "layerPartBlob": "aGVsbG8gbGF5ZXIgcGFydAo="}"#.utf8)
    static let signature = "ba928aa0bca4c076abea55e912364ce2557853bb0b472a4daba06c0cc2af358f"

    static func headers(signature: String = signature, key: String = "test", date: String = "20261129T145143Z", target: String = "SpencerFrontendService.UploadLayerPart") -> HTTPFields {
        [
            .contentType: "application/x-amz-json-1.1",
            HTTPField.Name("X-Amz-Date")!: date,
            HTTPField.Name("X-Amz-Target")!: target,
            .authorization: "AWS4-HMAC-SHA256 Credential=\(key)/20261129/us-east-1/ecr-public/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=\(signature)",
            .userAgent: "aws-cli/1.45.11",
        ]
    }

    /// A clock at the captured request's X-Amz-Date (2026-11-29T14:51:43Z), plus `late` ms.
    static func clock(late: Int64 = 0) -> TestClock {
        let clock = TestClock()
        clock.set(Timestamp(millisecondsSinceEpoch: 1_795_963_903_000 + late))
        return clock
    }

    static func verifier(at late: Int64 = 0, keys: [AccessKey] = [AccessKey(accessKeyId: "test", secretAccessKey: "test")]) -> SigV4Verifier {
        SigV4Verifier(keys: keys, clock: clock(late: late), servedRegistryId: testRegistryId)
    }

    func verify(_ v: SigV4Verifier = verifier(), headers: HTTPFields = headers(), body: [UInt8] = body) throws -> String {
        try v.verify(method: "POST", authority: "127.0.0.1:18765", path: "/", query: "", headers: headers, body: body)
    }

    func failure(_ body: () throws -> String) -> (type: String, status: HTTPResponse.Status)? {
        do {
            _ = try body()
            return nil
        } catch let error as APIError {
            return (error.type, error.status)
        } catch {
            return ("unexpected \(error)", .internalServerError)
        }
    }

    @Test func aRequestAwscliSigned_isAccepted_andNamesItsPrincipal() throws {
        #expect(SigV4Verifier.parseAmzDate("20261129T145143Z") == Timestamp(millisecondsSinceEpoch: 1_795_963_903_000))
        #expect(try verify() == "test")
        #expect(try verify(Self.verifier(at: 14 * 60_000)) == "test", "14 minutes late is inside the window")
        #expect(try verify(Self.verifier(at: -14 * 60_000)) == "test", "14 minutes early (the client's clock ahead) is inside it too")
    }

    @Test func everyWrongRequest_isRefusedWithAWSsName() {
        var unsigned = Self.headers()
        unsigned[.authorization] = nil
        #expect(failure { try verify(headers: unsigned) }?.type == "MissingAuthenticationTokenException")
        #expect(failure { try verify(headers: Self.headers(key: "nobody")) }?.type == "UnrecognizedClientException")
        let wrongSecret = Self.verifier(keys: [AccessKey(accessKeyId: "test", secretAccessKey: "other")])
        #expect(failure { try verify(wrongSecret) }?.type == "InvalidSignatureException")
        let late = failure { try verify(Self.verifier(at: 16 * 60_000)) }
        #expect(late?.type == "InvalidSignatureException" && late?.status == .badRequest, "expired")
        let early = failure { try verify(Self.verifier(at: -16 * 60_000)) }
        #expect(early?.type == "InvalidSignatureException" && early?.status == .badRequest, "signed in the future: the window is both ways, or a signature made now could be replayed for as long as its date is ahead")
        var tamperedBody = Self.body
        tamperedBody[tamperedBody.count - 3] ^= 1
        #expect(failure { try verify(body: tamperedBody) }?.type == "InvalidSignatureException")
        #expect(failure { try verify(headers: Self.headers(target: "SpencerFrontendService.CompleteLayerUpload")) }?.type == "InvalidSignatureException", "a signed header changed")
        #expect(failure { try verify(headers: Self.headers(signature: String(repeating: "0", count: 64))) }?.type == "InvalidSignatureException")
        var otherService = Self.headers()
        otherService[.authorization] = otherService[.authorization]!.replacingOccurrences(of: "ecr-public", with: "s3")
        #expect(failure { try verify(headers: otherService) }?.type == "InvalidSignatureException")
        var garbled = Self.headers()
        garbled[.authorization] = "AWS4-HMAC-SHA256 nonsense"
        #expect(failure { try verify(headers: garbled) }?.type == "IncompleteSignatureException")
        // Two lines were joined with a comma and read as one, later `key=value`s over earlier ones:
        // with a stray line after the signed one, the request was accepted.
        var twoLines = Self.headers()
        twoLines.append(HTTPField(name: .authorization, value: "foo"))
        #expect(failure { try verify(headers: twoLines) }?.type == "IncompleteSignatureException")
    }

    /// The path is signed as botocore signs it for every service but S3: without dot segments and
    /// repeated slashes (its `remove_dot_segments`), encoded again, slashes kept.
    @Test(arguments: [
        ("", "/"), ("/", "/"), ("/events", "/events"), ("/a:b", "/a%3Ab"), ("/a%3Ab", "/a%253Ab"), ("/a+b c", "/a%2Bb%20c"),
        ("/caf\u{E9}/x~y_z.-", "/caf%C3%A9/x~y_z.-"),
        ("/a//b/", "/a/b/"), ("//", "/"), ("/a/./b", "/a/b"), ("/a/b/../c", "/a/c"), ("/../a", "/a"), ("/a/..", "/"),
        ("/a/.b/%2E/", "/a/.b/%252E/"), ("/a/b/.", "/a/b"),
    ])
    func thePath_isEncodedAgain_asBotocoreSignsIt(path: String, canonical: String) {
        #expect(SigV4Verifier.canonicalPath(path) == canonical)
    }

    /// A name listed again and again made the canonical request hold its values again and again:
    /// thousands of repeats fit in a header, and each request then cost seconds of CPU.
    @Test func signedHeadersListedTwice_orTooMany_areRefusedBeforeAnyCanonicalRequest() {
        for list in ["content-type;host;host;x-amz-date;x-amz-target", "content-type;content-type;host;x-amz-date;x-amz-target",
                     // 65 names, the four the request needs among them: only the cap refuses it.
                     ((0..<61).map { String(format: "a%02d", $0) } + ["content-type", "host", "x-amz-date", "x-amz-target"]).sorted().joined(separator: ";"), ""] {
            var headers = Self.headers()
            headers[.authorization] = headers[.authorization]!.replacingOccurrences(of: "content-type;host;x-amz-date;x-amz-target", with: list)
            let refused = failure { try verify(headers: headers) }
            #expect(refused?.type == "IncompleteSignatureException" && refused?.status == .badRequest, "\(list.prefix(40)): \(String(describing: refused))")
        }
        #expect(throws: Never.self) { try verify() }
    }

    @Test func aPOSTMustSignItsTarget_andTheBodyIsAlwaysSigned() {
        var unsignedTarget = Self.headers()
        unsignedTarget[.authorization] = unsignedTarget[.authorization]!.replacingOccurrences(of: "content-type;host;x-amz-date;x-amz-target", with: "host;x-amz-date")
        #expect(failure { try verify(headers: unsignedTarget) }?.type == "IncompleteSignatureException")
        var unsignedPayload = Self.headers()
        unsignedPayload[HTTPField.Name("X-Amz-Content-SHA256")!] = "UNSIGNED-PAYLOAD"
        #expect(failure { try verify(headers: unsignedPayload) }?.type == "InvalidSignatureException")
        // the precheck, before any body is read, already refuses an unknown key
        #expect(throws: APIError.self) { try Self.verifier().precheck(method: "POST", headers: Self.headers(key: "nobody")) }
        #expect(throws: Never.self) { try Self.verifier().precheck(method: "POST", headers: Self.headers()) }
    }

    /// An anonymous caller may do only what the caller names public, or what a policy allows `*`:
    /// it is nobody's own (a path that skipped authentication must not act as the owner), but under
    /// `--allow-anonymous`, where everyone is.
    @Test func anAnonymousCaller_mayOnlyWhatIsPublicOrAllowedToEveryone() throws {
        let access = AccessPolicy(authentication: .sigV4(Self.verifier()), registryId: testRegistryId)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        for action in ["PutImage", "BatchDeleteImage", "SetRepositoryPolicy", "DescribeImages", "BatchGetImage"] {
            #expect(throws: AccessDenied.self, "\(action)") { try access.check(nil, action: action, on: ref, policyText: nil) }
        }
        #expect(throws: AccessDenied.self) { try access.check(nil, action: "SetRepositoryPolicy", on: ref, policyText: "{not a policy") }
        #expect(throws: Never.self) { try access.check(nil, action: "BatchGetImage", on: ref, policyText: nil, publicActions: AccessPolicy.pullActions) }
        #expect(throws: AccessDenied.self) { try access.check(nil, action: "DescribeImages", on: ref, policyText: nil, publicActions: AccessPolicy.pullActions) }
        #expect(throws: Never.self) { try access.check(nil, action: "DescribeImages", on: ref, policyText: nil, publicActions: AccessPolicy.galleryReadActions) }
        let toEveryone = #"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:PutImage"}}"#
        #expect(throws: Never.self) { try access.check(nil, action: "PutImage", on: ref, policyText: toEveryone) }
        let deniedToEveryone = #"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr-public:BatchGetImage"}}"#
        #expect(throws: AccessDenied.self) { try access.check(nil, action: "BatchGetImage", on: ref, policyText: deniedToEveryone, publicActions: AccessPolicy.pullActions) }

        let open = AccessPolicy(authentication: .anonymous, registryId: testRegistryId)
        #expect(throws: Never.self) { try open.check(nil, action: "PutImage", on: ref, policyText: nil) }
        #expect(throws: Never.self) { try open.check("anyone", action: "BatchDeleteImage", on: ref, policyText: nil) }
    }

    /// A key of another registry is who it says it is; what it may do is ``AccessPolicy``'s to say:
    /// nothing of the registry's own, and on a repository only what its policy allows.
    @Test func aKeyOfAnotherRegistry_isAuthenticated_andNeedsAPolicyThatAllowsIt() throws {
        let other = Self.verifier(keys: [AccessKey(accessKeyId: "test", secretAccessKey: "test", registryId: "999999999999", name: "carol")])
        #expect(try verify(other) == "test")
        let access = AccessPolicy(authentication: .sigV4(other), registryId: testRegistryId)
        #expect(access.principal("test")?.arn == "arn:aws:iam::999999999999:user/carol")
        #expect(throws: AccessDenied.self) { try access.checkRegistryWide("test", action: "CreateRepository") }
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        #expect(throws: AccessDenied.self) { try access.check("test", action: "PutImage", on: ref, policyText: nil) }
        let allowed = #"{"Statement":{"Effect":"Allow","Principal":{"AWS":"999999999999"},"Action":"ecr-public:PutImage"}}"#
        #expect(throws: Never.self) { try access.check("test", action: "PutImage", on: ref, policyText: allowed) }
        #expect(throws: AccessDenied.self) { try access.check("test", action: "BatchDeleteImage", on: ref, policyText: allowed) }
        #expect(throws: AccessDenied.self, "a key no longer configured") { try access.check("ghost", action: "PutImage", on: ref, policyText: nil) }
        #expect(throws: Never.self, "a public pull") { try access.check("test", action: "BatchGetImage", on: ref, policyText: nil, publicActions: AccessPolicy.pullActions) }
        // Strangers (anonymous, another registry's key) are not told a policy denied them; a key no
        // longer configured is no stranger (it is told the key is gone, not that nothing is there).
        #expect(access.isStranger(nil, to: ref) && access.isStranger("test", to: ref) && !access.isStranger("ghost", to: ref))
        let denied = #expect(throws: AccessDenied.self) { try access.check("test", action: "PutImage", on: ref, policyText: allowed.replacingOccurrences(of: "Allow", with: "Deny")) }
        #expect(denied?.message.contains("policy") == false, "\(denied?.message ?? "")")

        // A stored policy this binary cannot read fails closed, but can still be replaced by the registry's own keys.
        let own = AccessPolicy(authentication: .sigV4(Self.verifier()), registryId: testRegistryId)
        #expect(!own.isStranger("test", to: ref))
        #expect(throws: AccessDenied.self) { try own.check("test", action: "PutImage", on: ref, policyText: "{not a policy") }
        #expect(throws: Never.self) { try own.check("test", action: "SetRepositoryPolicy", on: ref, policyText: "{not a policy") }
    }

    /// Policies are parsed once per text and held in a bounded cache: a check against a text seen
    /// before decides as parsing it anew would, an unreadable one still fails closed, and however
    /// many texts are checked, at most ``ParsedPolicies/capacity`` are held.
    @Test func policies_areParsedOncePerText_decideAlike_andTheCacheIsBounded() throws {
        let access = AccessPolicy(authentication: .sigV4(Self.verifier()), registryId: testRegistryId)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        let denies = #"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr-public:PutImage"}}"#
        for _ in 0..<3 {
            #expect(throws: AccessDenied.self) { try access.check("test", action: "PutImage", on: ref, policyText: denies) }
            #expect(throws: Never.self) { try access.check("test", action: "BatchGetImage", on: ref, policyText: denies) }
            #expect(throws: AccessDenied.self) { try access.check("test", action: "PutImage", on: ref, policyText: "{not a policy") }
        }
        let cache = ParsedPolicies()
        #expect(try cache.policy(denies).get() == RepositoryPolicy(denies))
        #expect((try? cache.policy("{not a policy").get()) == nil)
        for i in 0..<(ParsedPolicies.capacity + 10) {
            _ = cache.policy(#"{"Statement":{"Sid":"S\#(i)","Effect":"Deny","Principal":"*","Action":"ecr-public:PutImage"}}"#)
            #expect(cache.count <= ParsedPolicies.capacity)
        }
        #expect(try cache.policy(denies).get() == RepositoryPolicy(denies), "decided alike after the cache started again")
        // Equal as Swift strings, different bytes (a Kelvin sign, U+212A, for a K): two policies.
        let kelvin = #"{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/\#u{212A}evin"},"Action":"ecr-public:PutImage"}}"#
        let plain = #"{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/Kevin"},"Action":"ecr-public:PutImage"}}"#
        #expect(kelvin == plain, "Swift holds them equal")
        let kevinsKey = AccessPolicy(principals: ["kevin": PolicyPrincipal(registryId: testRegistryId, name: "Kevin")], registryId: testRegistryId, opensEverything: false)
        #expect(throws: Never.self) { try kevinsKey.check("kevin", action: "PutImage", on: ref, policyText: kelvin) }
        #expect(throws: AccessDenied.self, "the plain text's Deny names Kevin, whatever was parsed first") {
            try kevinsKey.check("kevin", action: "PutImage", on: ref, policyText: plain)
        }
    }

    @Test func credentialsFiles_parse_andRefuseMalformedLines() throws {
        let keys = try AccessKey.parse("# operators\nAKID1 secret1\n\nAKID2 secret2 123456789012\nAKID3 secret3 123456789012 bob\n")
        #expect(keys == [
            AccessKey(accessKeyId: "AKID1", secretAccessKey: "secret1"), AccessKey(accessKeyId: "AKID2", secretAccessKey: "secret2", registryId: "123456789012"),
            AccessKey(accessKeyId: "AKID3", secretAccessKey: "secret3", registryId: "123456789012", name: "bob"),
        ])
        for malformed in ["lonely\n", "AKID secret 1234\n", "AKID secret 123456789012 bad/name\n", "AKID secret 123456789012 bob extra\n"] {
            #expect(throws: ValidationFailure.self, "\(malformed)") { try AccessKey.parse(malformed) }
        }
    }

    /// A file written on Windows was one line ("\r\n" is one `Character`, which a split on "\n"
    /// never meets), refused for the wrong reason; a key id given twice was the last line's,
    /// silently (a rotation that added the new secret above the old one kept the old); ids a
    /// signature cannot carry, or that the audit shows for calls without a key, were taken.
    @Test func credentialsFiles_takeCRLF_andRefuseKeysGivenTwiceOrNamedAsNoKey() throws {
        #expect(try AccessKey.parse("AKID1 secret1\r\n# note\r\n\r\nAKID2 secret2 123456789012\r\n") == [
            AccessKey(accessKeyId: "AKID1", secretAccessKey: "secret1"), AccessKey(accessKeyId: "AKID2", secretAccessKey: "secret2", registryId: "123456789012"),
        ])
        func refusal(_ text: String) -> String? {
            do { _ = try AccessKey.parse(text) } catch let failure as ValidationFailure { return failure.description } catch { return "\(error)" }
            return nil
        }
        #expect(refusal("AKID new\n\nAKID old\n") == "credentials line 3: access key id AKID is on line 1 too; give each key one line")
        #expect(refusal("command-line secret\n")?.contains("the principal the audit shows for calls without a key") == true)
        #expect(refusal("anonymous secret\n")?.contains("the principal the audit shows for calls without a key") == true)
        for id in ["AK/ID", "AK,ID", "AK=ID", "AKÏD", String(repeating: "A", count: 129)] {
            #expect(refusal("\(id) secret\n")?.contains("an access key id is 1 to 128 of letters, digits and ._-") == true, "\(id)")
        }
        #expect(refusal("AK.ID_1-x secret\n") == nil)
    }

    /// The credential scope names a region: any, by default (the client's own configuration chooses
    /// it); only the one given with `serve --region` when one is.
    @Test func aScopeForAnotherRegion_isInvalidSignatureOnlyWhereOneRegionIsServed() {
        let elsewhere = SigV4Verifier(
            keys: [AccessKey(accessKeyId: "test", secretAccessKey: "test")], clock: Self.clock(), servedRegistryId: testRegistryId, region: "eu-west-1")
        let refused = failure { try verify(elsewhere) }
        #expect(refused?.type == "InvalidSignatureException")
        #expect(refused?.status == .forbidden)
        #expect(failure { try verify() } == nil, "the captured request is scoped to us-east-1, and any region is taken by default")
        let usEast = SigV4Verifier(
            keys: [AccessKey(accessKeyId: "test", secretAccessKey: "test")], clock: Self.clock(), servedRegistryId: testRegistryId, region: "us-east-1")
        #expect(failure { try verify(usEast) } == nil)
    }
}
