import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Mustache
import Testing
@testable import UploadAPI
import UploadCore
import UploadService
import UploadStore
import UploadTesting

/// The pages' Markdown subset (nothing of the text becomes markup it did not name) and their
/// signed sessions. The browser's view of both is in Tests/EndToEnd/test_pages.py.
struct SafeMarkdownTests {
    @Test(arguments: [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"),
        ("<img src=x onerror=\"alert(1)\">", "<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>\n"),
        ("[a](javascript:alert(1))", "<p>a)</p>\n"),
        ("[a](JavaScript:alert(1))", "<p>a)</p>\n"),
        ("[a](data:text/html;base64,PHNjcmlwdD4=)", "<p>a</p>\n"),
        ("[a](/relative)", "<p>a</p>\n"),
        ("[a](https://x.example/\"onmouseover=\"alert(1))", "<p>a)</p>\n"),
        ("[<b>x</b>](https://x.example/)", "<p><a href=\"https://x.example/\" rel=\"nofollow noopener noreferrer\">&lt;b&gt;x&lt;/b&gt;</a></p>\n"),
        ("`<script>` and **<i>x</i>**", "<p><code>&lt;script&gt;</code> and <strong>&lt;i&gt;x&lt;/i&gt;</strong></p>\n"),
        ("```\n<script>alert('x')</script>\n```", "<pre><code>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</code></pre>\n"),
        ("# <h1>", "<h3>&lt;h1&gt;</h3>\n"),
    ])
    func hostileText_isEscaped_andOnlyTheSubsetBecomesMarkup(_ markdown: String, _ html: String) {
        #expect(SafeMarkdown.html(markdown) == html)
    }

    @Test func theSubset_rendersAsDocumented() {
        let markdown = "## Use\nRun *it* with **care**:\n\n- one\n- two\n\n1. first\n2. second\n\n```\ndocker run x\n```\nSee [the docs](https://docs.example/a?b=1&c=2)."
        #expect(SafeMarkdown.html(markdown) == """
            <h4>Use</h4>
            <p>Run <em>it</em> with <strong>care</strong>:</p>
            <ul><li>one</li><li>two</li></ul>
            <ol><li>first</li><li>second</li></ol>
            <pre><code>docker run x</code></pre>
            <p>See <a href="https://docs.example/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">the docs</a>.</p>

            """)
    }

    @Test func anUnpairedMarker_staysAsWritten() {
        #expect(SafeMarkdown.html("2 * 3 = 6, *a* and *b") == "<p>2 * 3 = 6, <em>a</em> and *b</p>\n")
        #expect(SafeMarkdown.html("a **b") == "<p>a **b</p>\n")
        #expect(SafeMarkdown.html("a ** b **") == "<p>a ** b **</p>\n")
        #expect(SafeMarkdown.html("a `b") == "<p>a `b</p>\n")
    }

    @Test func aBracketThatStartsNoLink_isText_andLaterLinksStillWork() {
        #expect(SafeMarkdown.html("See [RFC 9162] and [docs](https://x.example/)")
            == "<p>See [RFC 9162] and <a href=\"https://x.example/\" rel=\"nofollow noopener noreferrer\">docs</a></p>\n")
    }

    /// Catalog text is rendered on the feeds' one thread, so its cost must stay linear. Each input
    /// at 25,600 characters (aboutText's most) against the same at a tenth, each timed as the best
    /// of three runs of at least 50 ms: a quadratic renderer costs about 100 times as much per
    /// render, a linear one about 10; the bound, 40, is relative to this run.
    @Test(arguments: ["[", "[](", "*a ", "** ", "[a]", "`", "*é ", "**ü "])
    func pathologicalText_rendersInLinearTime(_ unit: String) {
        func secondsPerRender(_ count: Int) -> Double {
            let text = String(repeating: unit, count: count / unit.count)
            var best = Double.infinity
            for _ in 0..<3 {
                var renders = 0
                let start = ContinuousClock.now
                var elapsed = Duration.zero
                repeat {
                    _ = SafeMarkdown.html(text)
                    renders += 1
                    elapsed = ContinuousClock.now - start
                } while elapsed < .milliseconds(50)
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                best = min(best, seconds / Double(renders))
            }
            return best
        }
        let small = secondsPerRender(2_560), large = secondsPerRender(25_600)
        #expect(large / small < 40, "\(unit): \(large) s a render at 25,600 characters against \(small) s at 2,560")
    }

    @Test func windowsLineEndings_splitLinesToo() {
        #expect(SafeMarkdown.html("# Title\r\n- a\r\n- b\r\n\r\ntext") == "<h3>Title</h3>\n<ul><li>a</li><li>b</li></ul>\n<p>text</p>\n")
    }

    @Test func anUnclosedCodeBlock_endsWithTheText_escaped() {
        #expect(SafeMarkdown.html("```\n<a>") == "<pre><code>&lt;a&gt;</code></pre>\n")
    }
}

/// The templates escape every value one Unicode scalar at a time: swift-mustache's own HTML
/// escaping looks at whole Characters, and a `<` or `"` that shares one with a neighbouring
/// scalar (a prepended U+0600, a combining U+0301) would pass it unescaped.
struct PageTemplateTests {
    @Test(arguments: [
        ("\u{0600}<meta http-equiv=refresh content=0>", "\u{0600}&lt;meta http-equiv=refresh content=0&gt;"),
        ("\"\u{0301} autofocus onfocus=x \"", "&quot;\u{0301} autofocus onfocus=x &quot;"),
        ("<b>&'", "&lt;b&gt;&amp;&#39;"),
    ])
    func everyValue_isEscapedScalarByScalar(_ hostile: String, _ expected: String) throws {
        let page = try #require(PageTemplates.library.render(["query": hostile, "hasQuery": true], withTemplate: "registry"))
        #expect(page.range(of: "value=\"\(expected)\"", options: .literal) != nil, "in an attribute")
        #expect(page.range(of: "contains “\(expected)”", options: .literal) != nil, "in text")
        #expect(page.range(of: hostile, options: .literal) == nil, "the raw text is nowhere in the page")
    }
}

extension PageTemplateTests {
    /// A row's absent value must not be looked up in the page around it: an image without tags
    /// once showed the repository's whole tag list.
    @Test func anUntaggedImage_showsNoTagsOfThePage() throws {
        let page = try #require(PageTemplates.library.render(ECRPublicService.renderable([
            "name": "team/app", "pullCommand": "docker pull x", "hasTags": true, "hasImages": true,
            "tags": [["name": "v1", "digest": "sha256:aa", "size": "1 B", "pushedAt": "t"]],
            "images": [["digest": "sha256:bb", "imageTags": "–", "size": "1 B", "pushedAt": "t", "mediaType": "m"]],
        ] as [String: Any]) as Any, withTemplate: "repository"))
        #expect(!page.contains("[[") && !page.contains("sha256:aa\"]"), "no Swift description of the page's values")
        #expect(page.contains("<td>–</td>"))
    }
}

struct PageSessionTests {
    let clock = TestClock()
    let key = SymmetricKey(data: Array(repeating: UInt8(9), count: 32))

    func session(keys: [AccessKey] = [AccessKey(accessKeyId: "AKID", secretAccessKey: "secret")], registryKey: SymmetricKey? = nil) -> PageSession {
        PageSession(
            registryTokenKey: registryKey ?? key, clock: clock,
            authentication: .sigV4(SigV4Verifier(keys: keys, clock: clock, servedRegistryId: "123456789012")))
    }

    @Test func signIn_needsTheKeysSecret() {
        let session = session()
        #expect(session.signIn(accessKeyId: "AKID", secret: "secret") == "AKID")
        #expect(session.signIn(accessKeyId: "AKID", secret: "secreT") == nil)
        #expect(session.signIn(accessKeyId: "AKID", secret: "") == nil)
        #expect(session.signIn(accessKeyId: "NOPE", secret: "") == nil)
        #expect(session.signIn(accessKeyId: "", secret: "") == nil)
    }

    @Test func aCookie_namesItsKey_untilItExpires() {
        let session = session()
        let header = session.setCookie(for: "AKID")
        #expect(header.contains("HttpOnly") && header.contains("SameSite=Strict") && header.contains("Max-Age=28800"))
        let value = session.cookieValue(for: "AKID")
        #expect(session.viewer(fromCookieHeader: "a=b; \(session.cookieName)=\(value); c=d")?.accessKeyId == "AKID")
        #expect(session.viewer(fromCookieHeader: "uc_session=\(value)") == nil, "under another name")
        clock.advance(milliseconds: PageSession.lifetimeMilliseconds - 1)
        #expect(session.viewer(fromCookie: value)?.accessKeyId == "AKID")
        clock.advance(milliseconds: 1)
        #expect(session.viewer(fromCookie: value) == nil, "expired")
    }

    /// Signing out ends every session of the key made before it, a copied cookie included, on
    /// every server that shares the data folder (as a restart's or another node's); a sign-in
    /// after it, even within the same millisecond, makes a session that holds.
    @Test func signingOut_endsTheKeysSessions_onEveryServerOfTheFolder() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let keys = [AccessKey(accessKeyId: "AKID", secretAccessKey: "s"), AccessKey(accessKeyId: "OTHER", secretAccessKey: "t")]
        func node() -> PageSession {
            PageSession(
                registryTokenKey: key, clock: clock, authentication: .sigV4(SigV4Verifier(keys: keys, clock: clock, servedRegistryId: "123456789012")),
                signOuts: PageSignOuts(folder: dir.path, logger: Logger(label: "test")))
        }
        let (one, two) = (node(), node())
        let copied = one.cookieValue(for: "AKID"), others = one.cookieValue(for: "OTHER")
        clock.advance(milliseconds: 10)
        let viewer = try #require(two.viewer(fromCookie: copied))
        try two.signOut(viewer)
        #expect(one.viewer(fromCookie: copied) == nil && two.viewer(fromCookie: copied) == nil, "the copy too, on the other node")
        #expect(one.sessionsCanBeMade(for: "AKID"), "a key signed out may sign in again")
        #expect(!one.isCurrent(viewer), "an open stream's session ends")
        #expect(one.viewer(fromCookie: others)?.accessKeyId == "OTHER", "another key's sessions hold")
        let again = one.cookieValue(for: "AKID")  // the same millisecond as the sign-out
        #expect(node().viewer(fromCookie: again)?.accessKeyId == "AKID" && node().viewer(fromCookie: copied) == nil)
        // That session, made a millisecond "after" the sign-out, ends when it signs out in the same
        // millisecond (as one a node whose clock runs ahead made would).
        try one.signOut(try #require(one.viewer(fromCookie: again)))
        #expect(node().viewer(fromCookie: again) == nil)

        // A session a node whose clock runs ten hours ahead made signs out here: another key's
        // sign-out is kept (the file is pruned by this node's clock, never by a cookie's time).
        let ahead = TestClock()
        ahead.set(Timestamp(millisecondsSinceEpoch: clock.now().millisecondsSinceEpoch + 10 * 3_600_000))
        let fast = PageSession(
            registryTokenKey: key, clock: ahead, authentication: .sigV4(SigV4Verifier(keys: keys, clock: ahead, servedRegistryId: "123456789012")),
            signOuts: PageSignOuts(folder: dir.path, logger: Logger(label: "test")))
        try one.signOut(try #require(one.viewer(fromCookie: fast.cookieValue(for: "OTHER"))))
        #expect(node().viewer(fromCookie: copied) == nil, "AKID's sign-out is still recorded")
        try node().signOut(try #require(node().viewer(fromCookie: node().cookieValue(for: "AKID"))))

        // The file keeps a line a key, and drops sign-outs no session can be older than.
        let file = dir.path + "/" + DataFolder.pageSignOuts
        #expect(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count == 2)
        clock.advance(milliseconds: PageSession.lifetimeMilliseconds + 86_400_000 + 10)  // a session's life, a day for clocks, and the sign-outs' last milliseconds
        try one.signOut(try #require(one.viewer(fromCookie: one.cookieValue(for: "OTHER"))))
        #expect(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ")[0] } == ["4f54484552"])

        // A record that cannot be read takes no session: a sign-out it holds must not be missed.
        for damaged in ["not a sign-out\n", "414b4944 9223372036854775000\n", "414b4944 -5\n"] {
            try Data(damaged.utf8).write(to: URL(fileURLWithPath: file))
            #expect(node().viewer(fromCookie: node().cookieValue(for: "AKID")) == nil, "\(damaged)")
            #expect(!node().sessionsCanBeMade(for: "AKID"), "a sign-in is refused, saying why: \(damaged)")
            #expect(throws: StoreError.self) { try node().signOut(PageSession.Viewer(accessKeyId: "AKID", expiresAt: Timestamp(millisecondsSinceEpoch: 1))) }
        }
    }

    @Test func aForgedOrForeignCookie_isNoSession() {
        let session = session(keys: [AccessKey(accessKeyId: "AKID", secretAccessKey: "s"), AccessKey(accessKeyId: "OTHER", secretAccessKey: "t")])
        let value = session.cookieValue(for: "AKID")
        var fields = value.split(separator: ".").map(String.init)
        fields[1] = Array("OTHER".utf8).map { String(format: "%02x", $0) }.joined()
        #expect(session.viewer(fromCookie: fields.joined(separator: ".")) == nil, "another key's name under this signature")
        fields = value.split(separator: ".").map(String.init)
        fields[2] = String(Int64(fields[2])! + 1)
        #expect(session.viewer(fromCookie: fields.joined(separator: ".")) == nil, "a later expiry")
        let otherServer = self.session(registryKey: SymmetricKey(size: .bits256))
        #expect(otherServer.viewer(fromCookie: value) == nil, "another server's key")
        #expect(session.viewer(fromCookie: "") == nil)
        #expect(session.viewer(fromCookie: "v1...") == nil)
    }

    @Test func aKeyNoLongerConfigured_orGivenANewSecret_revokesItsCookies() {
        let value = session().cookieValue(for: "AKID")
        #expect(session().viewer(fromCookie: value)?.accessKeyId == "AKID")
        #expect(session(keys: [AccessKey(accessKeyId: "NEW", secretAccessKey: "s")]).viewer(fromCookie: value) == nil)
        #expect(session(keys: [AccessKey(accessKeyId: "AKID", secretAccessKey: "rotated")]).viewer(fromCookie: value) == nil)
    }

    /// A secret typed into the access key field of a refused sign-in never reaches the log.
    @Test func aRefusedSignIn_logsOnlyAnAccessKeyIdOfThisServer() {
        #expect(session().signIn(accessKeyId: "AKID", secret: "wrong") == nil)
        #expect(session().loggedAccessKeyId("AKID") == "AKID", "a wrong secret for a key of this server")
        #expect(session().loggedAccessKeyId("wJalrXUtnFEMI/K7MDENG") == "(not a key of this server)")
    }

    private static let ownPageThread = ECRPublicService.AdmittingThread(limit: ECRPublicService.pageThread.limit)

    /// At most ``ECRPublicService/pageThread``'s limit of pages wait for or use its thread; one
    /// more is refused at once, and the slots come back as pages finish. Anonymous views take all
    /// but the places kept for signed-in viewers, who still get theirs. (On a thread of its own
    /// with the pages' limit: filling the pages' own would refuse other tests' pages meanwhile.)
    @Test func pagesPastTheLimit_areRefusedAtOnce_andSlotsComeBack() async throws {
        let release = DispatchSemaphore(value: 0)
        let limit = ECRPublicService.pageThread.limit, anonymous = limit - ECRPublicService.placesForSignedInViewers
        let pageThread = Self.ownPageThread
        try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
            for n in 0..<limit {
                if n == anonymous {
                    while pageThread.inFlight < anonymous { try await Task.sleep(for: .milliseconds(5)) }
                    await #expect(throws: ECRPublicService.AdmittingThread.Busy.self, "no anonymous view past its share") {
                        _ = try await ECRPublicService.rendering(signedIn: false, on: pageThread) { Response(status: .ok) }
                    }
                }
                group.addTask { try await ECRPublicService.rendering(signedIn: n >= anonymous, on: pageThread) { release.wait(); return Response(status: .ok) }.status }
            }
            while pageThread.inFlight < limit { try await Task.sleep(for: .milliseconds(5)) }
            await #expect(throws: ECRPublicService.AdmittingThread.Busy.self) { _ = try await ECRPublicService.rendering(signedIn: true, on: pageThread) { Response(status: .ok) } }
            for _ in 0..<limit { release.signal() }
            for try await status in group { #expect(status == .ok) }
        }
        #expect(pageThread.inFlight == 0)
        #expect(try await ECRPublicService.rendering(signedIn: false, on: pageThread) { Response(status: .accepted) }.status == .accepted)
    }

    @Test func cookies_areSecure_behindHTTPS() {
        let secure = PageSession(registryTokenKey: key, clock: clock, authentication: .sigV4(SigV4Verifier(
            keys: [AccessKey(accessKeyId: "AKID", secretAccessKey: "s")], clock: clock, servedRegistryId: "123456789012")), secure: true)
        #expect(secure.setCookie(for: "AKID").hasSuffix("; Secure") && secure.clearCookie.hasSuffix("; Secure"))
        #expect(!session().setCookie(for: "AKID").contains("Secure"))
        #expect(secure.cookieName == "__Host-" + session().cookieName, "a name no other host or path can set")
    }

    /// Browsers keep cookies by host, not port: another data folder's server on the same host has
    /// a cookie name of its own, so that signing in to one does not sign out of the other; the
    /// nodes of one deployment, which share the key, share it.
    @Test func theCookiesName_isTheDataFolders() {
        let name = session().cookieName
        #expect(name.hasPrefix("uc_session_") && name.count == "uc_session_".count + 8)
        #expect(session().cookieName == name)
        #expect(session(registryKey: SymmetricKey(size: .bits256)).cookieName != name)
        #expect(session().setCookie(for: "AKID").hasPrefix(name + "=") && session().clearCookie.hasPrefix(name + "=;"))
    }

    @Test func origins_compareAsBrowsersSendThem() {
        #expect(ECRPublicService.normalizedOrigin("HTTPS://Registry.Example.com:443") == "https://registry.example.com")
        #expect(ECRPublicService.normalizedOrigin("http://127.0.0.1:80") == "http://127.0.0.1")
        #expect(ECRPublicService.normalizedOrigin("http://127.0.0.1:5080") == "http://127.0.0.1:5080")
    }

    @Test func aSealedCursor_opensOnlyOnThisServer_andShowsNoName() {
        let sealed = session().sealed("team/secret-repository")
        #expect(!sealed.contains("secret") && sealed.unicodeScalars.allSatisfy { $0.isASCII && $0 != "+" && $0 != "/" && $0 != "&" })
        #expect(session().opened(sealed) == "team/secret-repository")
        #expect(session(registryKey: SymmetricKey(size: .bits256)).opened(sealed) == nil)
        #expect(session().opened(String(sealed.dropLast(2)) + "AA") == nil)
        #expect(session().opened("team/secret-repository") == nil)
    }

    @Test func anonymousServers_takeNoSignIn() {
        let open = PageSession(registryTokenKey: key, clock: clock, authentication: .anonymous)
        #expect(!open.acceptsKeys)
        #expect(open.signIn(accessKeyId: "", secret: "") == nil)
    }

    @Test func aSignInMay_onlyReturnToAGalleryPath() {
        #expect(ECRPublicService.localPath("/gallery/audit?x=1") == "/gallery/audit?x=1")
        for next in ["//evil.example/gallery/", "https://evil.example/", "/gallery/\\evil", "/other", "/gallery/\nx", nil] {
            #expect(ECRPublicService.localPath(next) == nil)
        }
    }

    @Test func aFormBody_isDecoded() {
        #expect(ECRPublicService.formFields("a=1&b=x+y%2Bz&a=2&c") == ["a": "1", "b": "x y+z", "c": ""])
        // Percent signs that encode nothing are taken as written: a filter `q=100%` that matched
        // nothing was dropped, and the page showed everything; a bad first value stays the first.
        #expect(ECRPublicService.formFields("q=100%&r=%zz+x&r=ok") == ["q": "100%", "r": "%zz x"])
    }
}
