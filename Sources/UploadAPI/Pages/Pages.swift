import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Mustache
import NIOCore
import NIOPosix
import UploadCore
import UploadService
import UploadStore

/// The pages people look at: the registry's gallery (`/gallery/`, and `/` for a browser), each
/// repository's page, and the audit trail with its inclusion proofs checked on the server and a
/// live view. Rendered here from the store, with the templates of ``PageTemplates``; no script
/// but the audit page's own small one, nothing from another origin (``contentSecurityPolicy``).
///
/// Who sees what:
/// - The gallery and repository pages follow the registry's pull rules: anyone's, unless
///   `--private-pulls` (then signed in), and a repository whose policy denies the viewer pulls is
///   neither listed nor shown.
/// - The audit page is for this registry's keys, signed in (``PageSession``).
extension ECRPublicService {
    static let contentSecurityPolicy =
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func addPageRoutes(to router: Router<APIRequestContext>) {
        router.getAndHead("/") { request, _ in
            // A browser asking for the server's root gets the gallery; API clients never GET it.
            guard request.headers[.accept]?.lowercased().contains("text/html") == true else { return Response(status: .notFound) }  // media types ignore case
            return Self.redirect(to: "/gallery/")
        }
        router.getAndHead("/gallery") { request, _ in await self.page(request) { viewer in try self.registryPage(request, viewer) } }
        router.getAndHead("/gallery/repositories/**") { request, context in
            let name = context.parameters.getCatchAll().joined(separator: "/")
            return await self.page(request) { viewer in try self.repositoryPage(name, viewer) }
        }
        router.getAndHead("/gallery/audit") { request, _ in
            await self.auditPage(request) { viewer in
                // Signed for the page if the log grew (at most once per interval); without it, the page says why.
                var signed: Result<SignedCheckpoint, StoreError>?
                do {
                    if let checkpoints = self.checkpoints { signed = .success(try await checkpoints.current()) }
                } catch let broken as StoreError where broken.code == .corrupt {
                    signed = .failure(broken)  // the log no longer holds what it signed: the page shows it as the failed check it is
                } catch {
                    self.logger.error("the audit page could not read the signed checkpoint", metadata: ["error": "\(error)"])
                    signed = .failure(StoreError(.io, "could not be signed or read just now; see the server's log"))
                }
                let checkpoint = signed
                return try await Self.rendering(signedIn: true) { try self.auditTrail(request, viewer, signed: checkpoint) }
            }
        }
        router.getAndHead("/gallery/audit/proofs/:position") { request, context in
            let position = context.parameters.get("position")
            return await self.auditPage(request) { viewer in try await self.proofPage(position, viewer) }
        }
        router.getAndHead("/gallery/audit/stream") { request, _ in await self.auditPage(request) { viewer in try self.auditStream(request, for: viewer) } }
        router.getAndHead("/gallery/sign-in") { request, _ in await self.signInPage(next: request.uri.queryParameters["next"].map(String.init), error: nil) }
        router.post("/gallery/sign-in") { request, context in await self.signIn(request, context) }
        router.post("/gallery/sign-out") { request, _ in
            guard self.isSameOrigin(request) else { return await self.messagePage(.forbidden, "Refused", "A form of another site cannot sign you out.", viewer: nil) }
            // A record of sign-outs that cannot be read now must fail the sign-out (and keep the
            // cookie), not skip it. A session the record already ends is only cleared: recorded
            // anew, an old cookie (a proxy's log, a stolen copy) would end every session of its
            // key made since, as often as it was sent, each a locked and synced write.
            if let viewer = self.pageSession.sessionToSignOut(fromCookieHeader: request.headers[.cookie]) {
                do {
                    try await NIOThreadPool.singleton.runIfActive { try self.pageSession.signOut(viewer) }
                } catch {
                    // The cookie stays, so that signing out again can end the session.
                    self.logger.error("a sign-out could not be recorded", metadata: ["error": "\(error)"])
                    return await self.messagePage(
                        .serviceUnavailable, "Not signed out", "Your session could not be ended on the server just now; sign out again.",
                        viewer: viewer.accessKeyId)
                }
            }
            var response = Self.redirect(to: "/gallery/")
            response.headers[.setCookie] = self.pageSession.clearCookie
            return response
        }
        router.getAndHead("/gallery/assets/style.css") { _, _ in Self.asset(PageTemplates.styleSheet, type: "text/css; charset=utf-8") }
        router.getAndHead("/gallery/assets/live.js") { _, _ in Self.asset(PageTemplates.liveScript, type: "text/javascript; charset=utf-8") }
    }

    /// The viewer a request's session cookie names, if any.
    func viewer(_ request: Request) -> PageSession.Viewer? { pageSession.viewer(fromCookieHeader: request.headers[.cookie]) }

    /// Where a sign-in sends the browser back to: the page asked for, query and all.
    private static func signInRedirect(_ request: Request) -> Response {
        redirect(to: "/gallery/sign-in?next=" + percentEncoded(request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")))
    }

    /// A gallery page: public unless `--private-pulls`, when it needs a session. Rendered on a
    /// thread of the pages' own (``pageThread``), so that no number of page views can take the
    /// threads API requests run on, nor keep feed readers waiting.
    private func page(_ request: Request, _ render: @escaping @Sendable (String?) throws -> Response) async -> Response {
        let viewer = viewer(request)?.accessKeyId
        if registry.authority.privatePulls, viewer == nil, !registry.authority.opensEverything { return Self.signInRedirect(request) }
        do {
            let response = try await Self.rendering(signedIn: viewer != nil) { try render(viewer) }
            try AnswerHolding.checkHeld()
            return response
        } catch {
            return await failurePage(error, viewer: viewer)
        }
    }

    /// Where pages are rendered: one thread, at the feeds' lower priority; past 16 pages waiting
    /// or rendering, a page is refused at once (503), so that a burst of views waits a bounded time.
    static let pageThread = AdmittingThread(limit: 16)
    /// The places on ``pageThread`` (and on the registry's referrers thread) only callers with a
    /// key take: anonymous ones, which anyone can send in any number, never keep the registry's
    /// own keys (auditors, pushers) from theirs.
    static let placesForSignedInViewers = 4

    /// `render` on ``pageThread`` (or, for a test that fills it, a thread of its own).
    /// - Throws: ``AdmittingThread/Busy`` when it admits no more.
    static func rendering(
        signedIn: Bool, on thread: AdmittingThread = pageThread, _ render: @escaping @Sendable () throws -> Response
    ) async throws -> Response {
        let holding = AnswerHolding.current  // a task-local value: the page thread is not this task
        return try await thread.run(keepingFree: signedIn ? 0 : placesForSignedInViewers) {
            try AnswerHolding.$current.withValue(holding) { try render() }
        }
    }

    /// An audit page: a session of this registry's keys, always.
    private func auditPage(_ request: Request, _ render: (PageSession.Viewer) async throws -> Response) async -> Response {
        guard let viewer = viewer(request) else { return Self.signInRedirect(request) }
        do {
            try registry.authority.access.checkRegistryWide(viewer.accessKeyId, action: "ReadAuditTrail")
            let response = try await render(viewer)
            try AnswerHolding.checkHeld()
            return response
        } catch {
            return await failurePage(error, viewer: viewer.accessKeyId)
        }
    }

    /// A failure as a page: a refusal, a missing thing, bad input, or (logged) a fault.
    private func failurePage(_ error: any Error, viewer: String?) async -> Response {
        if let denied = error as? AccessDenied { return await messagePage(.forbidden, "Not allowed", denied.message, viewer: viewer) }
        if let missing = error as? PageNotFound { return await messagePage(.notFound, "Not found", missing.message, viewer: viewer) }
        if error is AdmittingThread.Busy { return Self.busy("The server is rendering as many pages as it will at once; try again in a moment.") }
        if let store = error as? StoreError, store.code == .overloaded { return Self.busy("The server is busy; try again in a moment.") }
        if let spent = error as? AnswerBudgetSpent { return Self.busy(spent.description + ".") }
        let api = APIError.from(error)
        if api.status == .internalServerError {
            if let heldBack = LogLimiter.requestFailures.admit(to: logger) {  // anyone may ask for a page
                logger.error("a page failed", metadata: ["error": "\(error)", "lines.held.back": "\(heldBack)"])
            }
            return await messagePage(.internalServerError, "Something went wrong", "The server could not read this page; it has logged why.", viewer: viewer)
        }
        return await messagePage(.badRequest, "Not understood", api.message, viewer: viewer)
    }

    // MARK: Sign-in

    func signInPage(next: String?, error: String?, status: HTTPResponse.Status = .ok) async -> Response {
        render("signIn", title: "Sign in", status: status, viewer: nil, heading: await headingReadAside(position: nil), [
            "purpose": "The audit trail shows every upload in every repository, so it is for this registry's keys. Sign in with an access key of the server's credentials.",
            "error": error as Any, "next": Self.localPath(next) ?? "/gallery/audit", "acceptsKeys": pageSession.acceptsKeys,
            "hours": PageSession.lifetimeMilliseconds / 3_600_000,
        ])
    }

    private func signIn(_ request: Request, _ context: APIRequestContext) async -> Response {
        guard isSameOrigin(request) else {
            return await messagePage(.forbidden, "Refused", "A form of another site cannot sign you in.", viewer: nil)
        }
        guard let body = try? await ClientBody(base: request.body).collect(upTo: 4096) else {
            return await signInPage(next: nil, error: "The form is larger than a sign-in needs.", status: .badRequest)
        }
        let form = Self.formFields(String(buffer: body))
        let next = form["next"]
        guard let accessKeyId = pageSession.signIn(accessKeyId: form["accessKeyId"] ?? "", secret: form["secretAccessKey"] ?? "") else {
            // Guesses at a secret show in the log, a line at most every 10 s (anyone may send them).
            if let heldBack = Self.failedSignIns.admit(to: logger) {
                logger.warning("a sign-in to the pages was refused", metadata: [
                    "access_key_id": "\(pageSession.loggedAccessKeyId(form["accessKeyId"] ?? ""))", "source": "\(context.remoteAddress?.recordedForm ?? "unknown")",
                    "refused_since_last_line": "\(heldBack)"])
            }
            return await signInPage(next: next, error: "That access key and secret do not match a key of this server.", status: .forbidden)
        }
        guard pageSession.sessionsCanBeMade(for: accessKeyId) else {
            return await messagePage(
                .serviceUnavailable, "Not signed in", "The server cannot read its record of sign-outs just now, so it makes no session (its log says why); try again later.",
                viewer: nil)
        }
        logger.notice("signed in to the pages", metadata: ["access_key_id": "\(accessKeyId)", "source": "\(context.remoteAddress?.recordedForm ?? "unknown")"])
        var response = Self.redirect(to: Self.localPath(next) ?? "/gallery/audit")
        response.headers[.setCookie] = pageSession.setCookie(for: accessKeyId)
        return response
    }

    /// Refused sign-ins' log lines: at most one every 10 s, counting those held back.
    static let failedSignIns = LogLimiter(interval: .seconds(10), heldBackLine: "more sign-ins to the pages were refused")

    /// A POST from a page of this server: its `Origin`, when sent (browsers send it on every
    /// form POST), names the host the request reached, or the public URL (`serve --public-url`)
    /// a proxy in front of it answers at. The cookie's `SameSite=Strict` covers the rest. Behind an
    /// `https` public URL only its origin: a page served over plain `http` at the same host (by
    /// anyone on the network path) is same-site to browsers that do not tell schemes apart.
    func isSameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin].map(Self.normalizedOrigin) else { return true }
        if let publicURL = registry.publicURL.map(Self.normalizedOrigin) {
            if origin == publicURL { return true }
            if publicURL.hasPrefix("https://") { return false }
        }
        guard let host = request.head.authority else { return false }
        return origin == Self.normalizedOrigin("http://" + host) || origin == Self.normalizedOrigin("https://" + host)
    }

    /// An origin as browsers send it: lower case, without its scheme's default port.
    static func normalizedOrigin(_ origin: String) -> String {
        let lower = origin.lowercased()
        if lower.hasPrefix("http://"), lower.hasSuffix(":80") { return String(lower.dropLast(3)) }
        if lower.hasPrefix("https://"), lower.hasSuffix(":443") { return String(lower.dropLast(4)) }
        return lower
    }

    /// `next` when it is a path of the gallery, so a sign-in can send nobody to another site.
    static func localPath(_ next: String?) -> String? {
        guard let next, next == "/gallery" || next.hasPrefix("/gallery/") || next.hasPrefix("/gallery?"), !next.contains("\\"),
              next.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else { return nil }
        return next
    }

    /// The fields of a query a page's form sent (GET): encoded as a form's body is, so a space
    /// is `+`, which the URI's own query parameters leave as it is.
    static func formQuery(_ request: Request) -> [String: String] { formFields(request.uri.query ?? "") }

    /// The fields of an `application/x-www-form-urlencoded` body. A name or value whose percent
    /// signs encode nothing (`100%`) is taken as written, as a filter that matches nothing rather
    /// than none; of a name given twice, the first.
    static func formFields(_ body: String) -> [String: String] {
        func decoded(_ text: Substring) -> String {
            let spaced = text.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        var fields: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decoded(parts[0])
            if fields[name] == nil { fields[name] = parts.count == 2 ? decoded(parts[1]) : "" }
        }
        return fields
    }

    // MARK: Rendering

    /// What the layout shows on every page besides its own values: the log position the page
    /// reflects, and the registry's name.
    struct PageHeading: Sendable {
        var position: UInt64
        var registryName: String
    }

    /// The heading, read where the caller runs: for pages rendered on ``pageThread``.
    /// - Parameter position: the position the page's own read reflected, when it made one.
    func heading(position: UInt64?) -> PageHeading {
        let read = headingRead(position: position)
        return heading((try? store.read(read)) ?? (position ?? 0, nil))
    }

    /// The heading, read off the cooperative pool (``UploadStore/SnapshotReading/reading(_:)``):
    /// for pages rendered where they are asked (sign-in, messages, proofs).
    func headingReadAside(position: UInt64?) async -> PageHeading {
        heading((try? await service.reading(headingRead(position: position))) ?? (position ?? 0, nil))
    }

    /// The heading's read: `position`, or the projections', and the registry's display name.
    private func headingRead(position: UInt64?) -> @Sendable (any StoreSnapshot) throws -> (position: UInt64, displayName: String?) {
        let registryId = settings.defaultRegistryId
        return { snapshot in (try position ?? snapshot.checkpoint(), try snapshot.registryCatalog(registryId)?.displayName) }
    }

    private func heading(_ read: (position: UInt64, displayName: String?)) -> PageHeading {
        PageHeading(position: read.position, registryName: read.displayName.flatMap { $0.isEmpty ? nil : $0 } ?? namelessRegistry)
    }

    /// What the pages call a registry without a display name, and call this one before a viewer
    /// who may not see its catalog data.
    private var namelessRegistry: String { "Registry \(settings.defaultRegistryId)" }

    /// `template` with `values`, inside the layout, with the pages' headers; `heading` read here
    /// when not given (``heading(position:)``, with `values["position"]`).
    func render(
        _ template: String, title: String, status: HTTPResponse.Status = .ok, viewer: String?, script: String? = nil,
        heading given: PageHeading? = nil, _ values: [String: Any]
    ) -> Response {
        let heading = given ?? heading(position: values["position"] as? UInt64)
        // Under --private-pulls the registry's catalog data, its display name included, is for
        // its own keys: the pages a stranger (not signed in, or another registry's key) gets show none of it.
        let hidesCatalog = registry.authority.privatePulls && !registry.authority.opensEverything
            && registry.authority.access.isStranger(viewer, toRegistry: settings.defaultRegistryId)
        let (position, registryName) = (heading.position, hidesCatalog ? namelessRegistry : heading.registryName)
        var values = values
        values["registryName"] = registryName
        let body = PageTemplates.library.render(Self.renderable(values) as Any, withTemplate: template) ?? ""
        let page = PageTemplates.library.render(Self.renderable([
            "title": title, "body": body, "signedInAs": viewer as Any, "script": script as Any, "position": position,
            "registryId": settings.defaultRegistryId, "registryName": registryName,
        ]) as Any, withTemplate: "layout") ?? ""
        var headers = Self.pageHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: Self.piecewise(ByteBuffer(string: page)))
    }

    /// `value` as the templates read it: every absent optional and empty text left out, at any
    /// depth. Mustache would render a `nil` held in an `Any` as the text "nil", and would take it,
    /// or an empty text, as present in a section (`{{#description}}`).
    static func renderable(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return nil }
            return renderable(wrapped)
        }
        if let text = value as? String { return text.isEmpty ? nil : text }
        if let dictionary = value as? [String: Any] { return dictionary.compactMapValues(renderable) }
        if let array = value as? [Any] { return array.compactMap(renderable) }
        return value
    }

    func messagePage(_ status: HTTPResponse.Status, _ heading: String, _ text: String, viewer: String?) async -> Response {
        render("message", title: heading, status: status, viewer: viewer, heading: await headingReadAside(position: nil), ["heading": heading, "text": text])
    }

    /// Every page's: nothing runs or loads from elsewhere, nothing is framed or kept (nor sniffed:
    /// ``NoSniff`` says so for every answer), and
    /// no address of it leaks to another site (`same-origin`, not `no-referrer`: under that, a
    /// browser sends `Origin: null` with the page's own forms, which ``isSameOrigin(_:)`` refuses).
    static let pageHeaders: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        HTTPField.Name("Referrer-Policy")!: "same-origin", HTTPField.Name("X-Frame-Options")!: "DENY", .cacheControl: "no-store",
    ]

    static func redirect(to location: String) -> Response {
        var headers = pageHeaders
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    private static func asset(_ text: String, type: String) -> Response {
        var headers = pageHeaders
        headers[.contentType] = type
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    private static let unreservedInPaths = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-._~")

    /// A time as the pages show it: `2026-12-02 10:01:05 UTC` (the log keeps milliseconds).
    static func shown(_ time: Timestamp) -> String {
        String(time.iso8601.prefix(19)).replacingOccurrences(of: "T", with: " ") + " UTC"
    }

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreservedInPaths) ?? ""
    }
}

/// A page asked for something the store does not hold.
struct PageNotFound: Error {
    let message: String
}

extension ECRPublicService {
    /// A 503 page saying `why` (plain text), made without a read: when ``pageThread`` admits no
    /// more pages, the store is overloaded, or answers held for slow readers fill their budget.
    static func busy(_ why: String) -> Response {
        var headers = pageHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.retryAfter] = "1"
        let page = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Busy</title></head><body><h1>Busy</h1><p>\(why)</p></body></html>"
        return Response(status: .serviceUnavailable, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: page)))
    }
}
