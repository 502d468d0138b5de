import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import UploadCore

/// `/token`: a bearer token for the scopes asked for, as far as the caller may have them.
/// Credentials, when sent, must be valid (this is how `docker login` and `skopeo login` check them).
///
/// Two forms ask for one, as distribution's token server takes them:
/// - `GET` with Basic credentials and `scope` parameters (the token flow every client speaks);
/// - `POST` of an OAuth2 password grant as a form (distribution's `oauth.md`, RFC 6749 §4.3),
///   which containerd, nerdctl and BuildKit try first when they hold credentials. Its refusals
///   are OAuth2's (`{"error", "error_description"}`, RFC 6749 §5.2), which they read.
///
/// A token for credentials carries every action on each repository it names (``RegistryAuthority/grant(_:to:)``).
extension RegistryFrontEnd {
    func token(_ call: Call) async throws -> Response {
        let principal: String?, scopes: [String]
        switch call.request.method {
        case .get, .head: (principal, scopes) = (try basicCaller(call), call.request.uri.queryParameters.getAll("scope").map { String($0) })
        case .post: (principal, scopes) = try await passwordGrantCaller(call)
        default: throw Self.methodNotAllowed(allowing: Self.readsOnly + [.post])
        }
        // Several scopes in one value are space-separated (OAuth2), the space sent as `%20` or,
        // form-encoded in a query, as `+`, which no scope holds otherwise.
        let requested = scopes.flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "+" }) }.compactMap { RegistryAuthority.Grant(scope: String($0)) }
        let grants = authority.grant(requested, to: principal)
        let token = authority.bearerToken(principal: principal, grants: grants)
        let issuedAt = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(authority.clock.now().millisecondsSinceEpoch) / 1000))
        var fields: [(String, JSONValue)] = [
            ("token", .string(token)), ("access_token", .string(token)),
            ("expires_in", .int(RegistryAuthority.tokenLifetimeSeconds)), ("issued_at", .string(issuedAt)),
        ]
        // What was granted, which may be more than was asked (RFC 6749 §5.1).
        if !grants.isEmpty { fields.append(("scope", .string(grants.map(\.scope).joined(separator: " ")))) }
        return Self.response(.ok, .object(fields), call.request, headers: Self.neverCached)
    }

    /// A token is a credential: no cache keeps it (RFC 6749 §5.1).
    static var neverCached: HTTPFields { [.cacheControl: "no-store"] }

    /// The principal of a `GET`'s Basic credentials, `nil` without any (or, under
    /// `--allow-anonymous`, with invalid ones); 401 with a Basic challenge for invalid ones.
    private func basicCaller(_ call: Call) throws -> String? {
        guard let header = call.request.headers[.authorization] else { return nil }
        let several = call.request.headers[values: .authorization].count > 1
        func refused(_ message: String) -> RegistryError {
            var error = RegistryError(.unauthorized, message)
            error.headers[.wwwAuthenticate] = "Basic realm=\"\(Self.host(of: call.request))\""
            error.headers[.cacheControl] = "no-store"
            return error
        }
        guard !several, let credentials = Self.credentials(header, scheme: "basic") else {
            throw refused(several ? Self.severalAuthorizations : "The token endpoint takes Basic credentials")
        }
        switch basicPrincipal(credentials) {
        case .success(let principal): return principal
        case .failure(let refusal): if authority.opensEverything { return nil } else { throw refused(refusal.message) }
        }
    }

    /// The principal and scopes of a `POST`'s password grant; ``OAuthTokenRefusal`` otherwise.
    private func passwordGrantCaller(_ call: Call) async throws -> (String?, [String]) {
        let mediaType = call.request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard mediaType == "application/x-www-form-urlencoded" else {
            throw OAuthTokenRefusal(.invalidRequest, "The token endpoint takes a POST as an application/x-www-form-urlencoded form")
        }
        let body = try await ClientBody(call.request, limit: Self.tokenFormBytes).collect(upTo: Self.tokenFormBytes)
        guard let form = OAuthForm(body.readableBytesView) else {
            throw OAuthTokenRefusal(.invalidRequest, "The form is not valid UTF-8 with well-formed escapes")
        }
        // RFC 6749 §3.2: no parameter is sent twice (which of two passwords would be checked?).
        if let repeated = form.repeatedName(exceptFor: ["scope"]) {
            throw OAuthTokenRefusal(.invalidRequest, "The form sends '\(repeated.prefix(64))' more than once")
        }
        switch form.first("grant_type") {
        case "password": break
        case nil: throw OAuthTokenRefusal(.invalidRequest, "The form names no grant_type")
        case let other?:
            throw OAuthTokenRefusal(.unsupportedGrantType, "This server gives tokens for grant_type=password only, not '\(other.prefix(64))' (it gives no refresh tokens)")
        }
        guard let user = form.first("username"), let password = form.first("password") else {
            throw OAuthTokenRefusal(.invalidRequest, "A password grant names a username and a password")
        }
        switch passwordPrincipal(user: user[...], password: password[...]) {
        case .success(let principal): return (principal, form.all("scope"))
        case .failure(let refusal):
            guard authority.opensEverything else { throw OAuthTokenRefusal(.invalidGrant, refusal.message) }
            return (nil, form.all("scope"))
        }
    }

    /// The longest form taken: a grant's fields and a few hundred scopes.
    static let tokenFormBytes = 64 * 1024
}

/// A refusal of an OAuth2 token request, in RFC 6749 §5.2's shape.
struct OAuthTokenRefusal: Error {
    enum Code: String {
        case invalidRequest = "invalid_request"
        case invalidGrant = "invalid_grant"
        case unsupportedGrantType = "unsupported_grant_type"
    }

    let code: Code
    let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    func response(_ request: Request) -> Response {
        RegistryFrontEnd.response(
            .badRequest, .object([("error", .string(code.rawValue)), ("error_description", .string(description))]), request,
            headers: RegistryFrontEnd.neverCached)
    }
}

/// An `application/x-www-form-urlencoded` body's fields, in order (`+` is a space).
struct OAuthForm {
    private let fields: [(name: String, value: String)]

    init?(_ bytes: ByteBufferView) {
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        var fields: [(String, String)] = []
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ part: Substring) -> String? { part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decoded(parts[0]), let value = decoded(parts.count > 1 ? parts[1] : "") else { return nil }
            fields.append((name, value))
        }
        self.fields = fields
    }

    func first(_ name: String) -> String? { fields.first { $0.name == name }?.value }

    /// The first name sent more than once, of those not in `allowed`.
    func repeatedName(exceptFor allowed: Set<String>) -> String? {
        var seen: Set<String> = []
        return fields.first { !allowed.contains($0.name) && !seen.insert($0.name).inserted }?.name
    }

    func all(_ name: String) -> [String] { fields.filter { $0.name == name }.map(\.value) }
}
