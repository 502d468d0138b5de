import Foundation
import HTTPTypes
import Hummingbird
import UploadStore

/// Under `--allow-anonymous` (loopback only), every request must name this server by a loopback
/// host, or by the public endpoint or URL the operator configured, and come from no other origin.
/// Otherwise a web page in a browser on this machine could drive the API: one whose name an
/// attacker points at 127.0.0.1 (DNS rebinding; to the browser its requests are same-origin), or
/// any page, by a cross-site POST a browser sends without asking first (a form's). Signed requests
/// need no such guard. A request without `Host` (HTTP/1.0) or `Origin` comes from no browser page.
///
/// A proxy on this machine makes every request it relays come from loopback, naming whatever
/// host it is told to: one that says it relays another machine's request (`Forwarded`,
/// `X-Forwarded-For`, `X-Real-IP` naming a client that is not loopback, as Caddy, Traefik, Envoy
/// and haproxy's `forwardfor` do) is refused. One that says nothing cannot be told from a local
/// client: the README says not to put `--allow-anonymous` behind a proxy others reach.
struct LoopbackHostGuard<Context: RequestContext>: RouterMiddleware {
    /// Hosts named by configuration, lowercased.
    let configuredHosts: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // A second `Host` line never reaches this far (``HTTP1Framing`` refuses it with 400).
        let relayed = Loopback.relayedClients(request.headers)
        guard let refusal = refusal(authority: request.head.authority, origin: request.headers[.origin], relayedFor: relayed) else {
            return try await next(request, context)
        }
        if RegistryFrontEnd.serves(path: request.uri.path) {
            return RegistryFrontEnd.errorResponse(RegistryError(.denied, refusal), request)
        }
        let error = APIError(type: "AccessDeniedException", message: refusal, status: .forbidden)
        var response = ECRPublicService.response(error.status, error.body, requestId: RandomUUIDs.next())
        response.headers[ECRPublicService.errorTypeHeader] = error.type
        return response
    }

    /// Why a request naming `authority`, sent from `origin`, and relayed by a proxy for the
    /// clients `relayedFor` names, is refused; `nil` when it is not.
    func refusal(authority: String?, origin: String?, relayedFor: [String] = []) -> String? {
        if let client = relayedFor.first(where: { !Loopback.isLoopback($0) }) {
            return "This server accepts unsigned requests only from this machine; this one was relayed by a proxy for '\(client.prefix(100))'"
        }
        if let authority, !allows(Loopback.host(ofAuthority: authority)) {
            return "This server accepts unsigned requests only for a loopback host; '\(authority)' is not one"
        }
        // `Origin: null` (a sandboxed page, a redirect) is no page of this server's either.
        if let origin, !allowsOrigin(origin, authority: authority) {
            return "This server accepts unsigned requests only from its own pages; '\(origin)' is another origin"
        }
        return nil
    }

    /// A page of this server's: a configured host (behind a proxy, whose port may differ), or a
    /// loopback host on the port the request was sent to. A page of another server on this
    /// machine (a development server on another port) is another origin.
    private func allowsOrigin(_ origin: String, authority: String?) -> Bool {
        guard let url = URL(string: origin), let host = url.host.map(Self.withoutBrackets), allows(host) else { return false }
        if configuredHosts.contains(host.lowercased()) { return true }
        guard let authority else { return true }  // HTTP/1.0 names no port to compare
        let originPort = url.port ?? (url.scheme?.lowercased() == "https" ? 443 : 80)
        return originPort == Loopback.port(ofAuthority: authority) ?? 80
    }

    private func allows(_ host: String?) -> Bool {
        guard let host else { return false }
        return Loopback.isLoopback(host) || configuredHosts.contains(host.lowercased())
    }

    /// An IPv6 host as `URL` may give it, `[::1]`, without its brackets.
    static func withoutBrackets(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }
}

/// Loopback addresses and names, as `serve --allow-anonymous` requires and checks them.
public enum Loopback {
    /// Whether `host` (an address literal or `localhost`, without a port or brackets) is this
    /// machine's loopback; a name such as `127.example.com` is not.
    public static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        // The address's bytes in network order, as `inet_pton` writes them (no C struct's members:
        // several modules declare `in_addr`).
        var address = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, host, &address) == 1 { return address[0] == 127 }
        if inet_pton(AF_INET6, host, &address) == 1 {
            // `::1`, or an IPv4 loopback address mapped (`::ffff:127.0.0.1`), as a dual-stack
            // socket names an IPv4 client and a proxy on one may relay it.
            return address == [UInt8](repeating: 0, count: 15) + [1]
                || (address.prefix(12).elementsEqual([UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]) && address[12] == 127)
        }
        return false
    }

    /// The clients a proxy says it relays the request for: each `for=` of `Forwarded` (RFC 7239),
    /// each address of `X-Forwarded-For`, and `X-Real-IP`, without port or brackets. An
    /// obfuscated or `unknown` one is kept as written (and is no loopback).
    static func relayedClients(_ headers: HTTPFields) -> [String] {
        var clients: [String] = []
        for value in headers[values: .forwarded] {
            for element in value.split(separator: ",") {
                for pair in element.split(separator: ";") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "for" else { continue }
                    clients.append(withoutPort(parts[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))))
                }
            }
        }
        for name in [HTTPField.Name.xForwardedFor, .xRealIP] {
            for value in headers[values: name] {
                clients += value.split(separator: ",").map { withoutPort($0.trimmingCharacters(in: .whitespaces)) }
            }
        }
        return clients
    }

    /// An address as proxies write it (`192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `::1`), without its port and brackets.
    static func withoutPort(_ node: String) -> String {
        if node.hasPrefix("[") { return host(ofAuthority: node) ?? node }
        return node.filter { $0 == ":" }.count == 1 ? String(node.prefix { $0 != ":" }) : node
    }

    /// The port of a `Host` header's value, when it names one.
    static func port(ofAuthority authority: String) -> Int? {
        guard let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") else { return nil }
        return Int(authority[authority.index(after: colon)...])
    }

    /// The host of a `Host` header's value (`name`, `name:port`, `[v6]` or `[v6]:port`); `nil` when
    /// it is none of those.
    static func host(ofAuthority authority: String) -> String? {
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { return nil }
            return String(authority[authority.index(after: authority.startIndex)..<close])
        }
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty else { return nil }
        return String(parts[0])
    }
}

extension HTTPField.Name {
    static let forwarded = Self("Forwarded")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xRealIP = Self("X-Real-IP")!
}
