import Crypto
import Foundation
import Testing
@testable import UploadAPI
import UploadCore
import UploadTesting

/// The registry's passwords and bearer tokens (``RegistryAuthority``), and how its paths are read.
struct RegistryAuthorityTests {
    let clock = TestClock()
    let key = SymmetricKey(data: Array(repeating: UInt8(7), count: 32))

    func authority(keys: Set<String>? = ["AKID", "OTHER"], registry: String = "123456789012", privatePulls: Bool = false) -> RegistryAuthority {
        RegistryAuthority(key: key, clock: clock, registryId: registry, accessKeys: keys, privatePulls: privatePulls)
    }

    @Test func aPassword_namesItsKey_untilItExpires() throws {
        let (password, expiresAt) = authority().password(for: "AKID")
        #expect(expiresAt.millisecondsSinceEpoch == clock.now().millisecondsSinceEpoch + 12 * 3_600_000)
        #expect(authority().principal(ofPassword: password) == "AKID")
        clock.advance(milliseconds: 12 * 3_600_000 - 1)
        #expect(authority().principal(ofPassword: password) == "AKID")
        clock.advance(milliseconds: 1)
        #expect(authority().principal(ofPassword: password) == nil, "expired after 12 hours")
    }

    @Test func aForgedOrForeignPassword_isRefused() throws {
        let (password, _) = authority().password(for: "AKID")
        var bytes = Array(password.utf8)
        for i in bytes.indices {  // any one character changed
            let original = bytes[i]
            bytes[i] = original == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            #expect(authority().principal(ofPassword: String(decoding: bytes, as: UTF8.self)) == nil, "character \(i)")
            bytes[i] = original
        }
        #expect(authority().principal(ofPassword: String(decoding: bytes, as: UTF8.self)) == "AKID")
        let otherKey = RegistryAuthority(key: SymmetricKey(size: .bits256), clock: clock, registryId: "123456789012", accessKeys: ["AKID"])
        #expect(otherKey.principal(ofPassword: password) == nil, "signed under another server's key")
        #expect(authority(registry: "210987654321").principal(ofPassword: password) == nil, "for another registry")
        #expect(authority(keys: ["OTHER"]).principal(ofPassword: password) == nil, "revoked: its key is no longer configured")
        #expect(authority().principal(ofPassword: "") == nil && authority().principal(ofPassword: "....") == nil)
    }

    /// A client is told why its password is refused: one told "not within 12 hours" for its key's
    /// new secret looked at its clock.
    @Test func aRefusedPassword_saysWhy() throws {
        let (password, _) = authority().password(for: "AKID")
        func refusal(_ authority: RegistryAuthority, _ password: String) -> RegistryAuthority.PasswordRefusal? {
            if case .failure(let refusal) = authority.checkPassword(password) { refusal } else { nil }
        }
        #expect(refusal(authority(), "not-a-password") == .notAPassword)
        #expect(refusal(authority(registry: "210987654321"), password) == .otherRegistry)
        #expect(refusal(authority(keys: ["OTHER"]), password) == .notSigned, "its key removed")
        #expect(refusal(RegistryAuthority(key: SymmetricKey(size: .bits256), clock: clock, registryId: "123456789012", accessKeys: ["AKID"]), password) == .notSigned)
        clock.advance(milliseconds: 12 * 3_600_000)
        #expect(refusal(authority(), password) == .expired)
        #expect(RegistryAuthority.PasswordRefusal.notSigned.message.contains("new secret") && RegistryAuthority.PasswordRefusal.expired.message.contains("expired"))
    }

    @Test func aBearerToken_grantsWhatWasGiven_untilItExpires() throws {
        let grants = [RegistryAuthority.Grant(repository: "team/app", actions: ["pull", "push"])]
        let token = authority().bearerToken(principal: "AKID", grants: grants)
        let claims = try #require(authority().claims(ofBearer: token))
        #expect(claims.principal == "AKID" && claims.grants == grants)
        #expect(claims.grants[0].allows(.push, on: "team/app") && !claims.grants[0].allows(.delete, on: "team/app"))
        #expect(!claims.grants[0].allows(.pull, on: "team/app2"))
        let anonymous = try #require(authority().claims(ofBearer: authority().bearerToken(principal: nil, grants: [])))
        #expect(anonymous.principal == nil && anonymous.grants.isEmpty)
        #expect(authority().claims(ofBearer: String(token.dropLast())) == nil)
        #expect(authority().claims(ofBearer: token.replacingOccurrences(of: "uct1.", with: "uct1.x")) == nil)
        #expect(authority(registry: "210987654321").claims(ofBearer: token) == nil, "given for another registry, under the same key")
        #expect(authority(registry: "210987654321").claims(ofBearer: authority().bearerToken(principal: nil, grants: grants)) == nil, "anonymous too")
        clock.advance(milliseconds: RegistryAuthority.tokenLifetimeSeconds * 1000)
        #expect(authority().claims(ofBearer: token) == nil, "expired")
    }

    /// A leaked password could mint a token just before its key was given a new secret, and push
    /// with it after: tokens are signed over their key's secret, as passwords are.
    @Test func aNewSecret_revokesTheKeysTokens_asItsPasswords() throws {
        func authority(secret: String) -> RegistryAuthority {
            RegistryAuthority(key: key, clock: clock, registryId: "123456789012", accessKeys: ["AKID", "OTHER"],
                              secrets: ["AKID": secret, "OTHER": "unchanged"])
        }
        let grants = [RegistryAuthority.Grant(repository: "team/app", actions: ["pull", "push"])]
        let before = authority(secret: "leaked")
        let (token, other) = (before.bearerToken(principal: "AKID", grants: grants), before.bearerToken(principal: "OTHER", grants: grants))
        let (password, _) = before.password(for: "AKID")
        #expect(authority(secret: "leaked").claims(ofBearer: token)?.principal == "AKID", "a restart revokes nothing")
        let after = authority(secret: "rotated")
        #expect(after.claims(ofBearer: token) == nil && after.principal(ofPassword: password) == nil)
        #expect(after.claims(ofBearer: other)?.principal == "OTHER", "another key's tokens stand")
        let anonymous = try #require(after.claims(ofBearer: after.bearerToken(principal: nil, grants: grants)), "anonymous tokens bind no secret")
        #expect(anonymous.principal == nil && anonymous.grants == grants)
    }

    /// The attack the review found: an anonymous caller asked for a scope whose name held a line
    /// break, was granted "pull" on it, and the token read back as a push grant on another repository.
    @Test func aScopeWithALineBreak_grantsNothing_andATokenNeverReadsBackMoreThanItWasGiven() throws {
        let smuggled = "repository:victim:push\nrepository:xy:pull"
        #expect(RegistryAuthority.Grant(scope: smuggled) == nil)
        let granted = authority().grant([RegistryAuthority.Grant(scope: "repository:xy:pull")!], to: nil)
        let claims = try #require(authority().claims(ofBearer: authority().bearerToken(principal: nil, grants: granted)))
        #expect(claims.grants == granted)
        #expect(!claims.grants.contains { $0.allows(.push, on: "victim") })
    }

    /// Credentials get every action on each repository named, whichever they asked for (a client
    /// that asked for its first challenge's pull then pushes with the token); anonymous callers
    /// pulls only, and under `--private-pulls` nothing.
    @Test func anonymousCallers_getPullsOnly_andUnderPrivatePullsNothing_credentialsEveryAction() {
        let asked = [RegistryAuthority.Grant(repository: "team/app", actions: ["pull", "push", "delete"])]
        let every = [RegistryAuthority.Grant(repository: "team/app", actions: ["pull", "push", "delete"])]
        #expect(authority().grant(asked, to: nil) == [.init(repository: "team/app", actions: ["pull"])])
        #expect(authority().grant([.init(repository: "team/app", actions: ["*"])], to: nil) == [.init(repository: "team/app", actions: ["pull"])])
        #expect(authority().grant([.init(repository: "team/app", actions: ["push"])], to: nil) == [])
        #expect(authority(privatePulls: true).grant(asked, to: nil) == [])
        #expect(authority().grant([.init(repository: "team/app", actions: ["pull"])], to: "AKID") == every)
        #expect(authority(keys: nil).grant([.init(repository: "team/app", actions: ["pull"])], to: nil) == every, "--allow-anonymous opens everything")
    }

    @Test(arguments: [
        ("repository:team/app:pull,push", "team/app", ["pull", "push"]), ("repository:xy:*", "xy", ["*"]),
        ("repository:a:b:pull", nil, []), ("repository:pull", nil, []), ("repository::pull", nil, []), ("registry:catalog:*", nil, []),
        ("repository:team/app:pull,", nil, []), ("repository:team/app:own", nil, []), ("repository:Team/App:pull", nil, []),
        // A line break smuggled into the name (Hummingbird decodes %0A) must not become a second grant.
        ("repository:victim:push\nrepository:xy:pull", nil, []),
    ] as [(String, String?, [String])])
    func scopes_areReadAsTheTokenFlowWritesThem(scope: String, repository: String?, actions: [String]) {
        let grant = RegistryAuthority.Grant(scope: scope)
        #expect(grant?.repository == repository)
        if let grant { #expect(grant.actions == actions && grant.scope == scope) }
    }

    @Test(arguments: [
        ("/v2/", "ping"), ("/v2", "ping"), ("/token", "token"),
        ("/v2/team/app/blobs/uploads/", "start team/app"), ("/v2/team/app/blobs/uploads", "start team/app"),
        ("/v2/a/blobs/uploads/b/blobs/uploads/0f8c1a2e-0000-4000-8000-000000000001", "upload a/blobs/uploads/b 0f8c1a2e-0000-4000-8000-000000000001"),
        ("/v2/team/manifests/blobs/sha256:ab", "blob team/manifests sha256:ab"), ("/v2/team/blobs/manifests/latest", "manifest team/blobs latest"),
        ("/v2/t/a/tags/list", "tags t/a"), ("/v2/t/referrers/sha256:ab", "referrers t sha256:ab"), ("/v2/t", nil), ("/v2/t/other/x", nil),
    ] as [(String, String?)])
    func paths_areReadFromTheRight(path: String, expected: String?) {
        let described: String? = RegistryFrontEnd.Route(path: path).map { route in
            switch route {
            case .ping: "ping"
            case .token: "token"
            case .startUpload(let name): "start \(name)"
            case .upload(let name, let id): "upload \(name) \(id)"
            case .blob(let name, let digest): "blob \(name) \(digest)"
            case .manifest(let name, let reference): "manifest \(name) \(reference)"
            case .tags(let name): "tags \(name)"
            case .referrers(let name, let digest): "referrers \(name) \(digest)"
            }
        }
        #expect(described == expected)
    }

    @Test(arguments: [
        ("bytes=0-9", "0...9"), ("bytes=5-", "5...99"), ("bytes=-10", "90...99"), ("bytes=90-200", "90...99"), ("bytes=-200", "0...99"),
        ("Bytes=0-9", "0...9"), ("BYTES=-10", "90...99"),
        ("bytes=100-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
        ("bytes=9-5", "unsatisfiable"), ("bytes=a-b", "unsatisfiable"), ("bytes=abc", "unsatisfiable"), ("bytes=-", "unsatisfiable"),
        ("bytes=90-99999999999999999999", "90...99"), ("bytes=-99999999999999999999", "0...99"),
        ("bytes=99999999999999999999-", "unsatisfiable"), ("bytes=+0-+1", "unsatisfiable"), ("bytes=-+5", "unsatisfiable"),
        ("bytes= 0-1", "unsatisfiable"),
        ("bytes=0-1,3-4", "ignored"), ("items=0-1", "ignored"), ("byte", "ignored"), ("", "ignored"),
    ] as [(String, String)])
    func blobRanges_areServed_refused_orIgnored(header: String, expected: String) {
        let range = RegistryFrontEnd.byteRange(header, size: 100)
        let described = range.map { $0.map { "\($0.lowerBound)...\($0.upperBound)" } ?? "unsatisfiable" } ?? "ignored"
        #expect(described == expected)
    }

    /// A chunk's `Content-Range`: digits only, as a blob's `Range` (Swift's `UInt64("+0")` took a sign).
    @Test(arguments: [
        ("0-4", "0...4"), ("bytes=5-9", "5...9"), ("bytes 5-9/10", "5...9"), ("+0-+4", "refused"), ("0- 4", "refused"), ("4-0", "refused"),
        ("0-99999999999999999999", "refused"), ("-4", "refused"),
    ] as [(String, String)])
    func chunkRanges_takeDigitsOnly(header: String, expected: String) {
        let range = RegistryFrontEnd.chunkRange(header)
        #expect((range.map { "\($0.0)...\($0.1)" } ?? "refused") == expected)
    }
}
