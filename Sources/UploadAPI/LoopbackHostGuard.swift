import Foundation
import HTTPTypes
import Hummingbird
import UploadStore

/// Under `--allow-anonymous` (loopback only), every request must name this server by a loopback
/// host, or by the public endpoint or URL the operator configured. Otherwise a web page whose name
/// an attacker points at 127.0.0.1 (DNS rebinding) could drive the whole API from a browser on this
/// machine: to the browser its requests are same-origin. Signed requests need no such guard.
/// A request without a `Host` (HTTP/1.0) comes from no browser and is let through.
struct LoopbackHostGuard<Context: RequestContext>: RouterMiddleware {
    /// Hosts named by configuration, lowercased.
    let configuredHosts: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authority = request.head.authority else { return try await next(request, context) }
        if let host = Loopback.host(ofAuthority: authority), Loopback.isLoopback(host) || configuredHosts.contains(host.lowercased()) {
            return try await next(request, context)
        }
        let message = "This server accepts unsigned requests only for a loopback host; '\(authority)' is not one"
        let path = request.uri.path
        if path == "/v2" || path.hasPrefix("/v2/") || path == "/token" {
            return RegistryFrontEnd.errorResponse(RegistryError(.denied, message), request)
        }
        let error = APIError(type: "AccessDeniedException", message: message, status: .forbidden)
        var response = ECRPublicService.response(error.status, error.body, requestId: RandomUUIDs.next())
        response.headers[ECRPublicService.errorTypeHeader] = error.type
        return response
    }
}

/// Loopback addresses and names, as `serve --allow-anonymous` requires and checks them.
public enum Loopback {
    /// Whether `host` (an address literal or `localhost`, without a port or brackets) is this
    /// machine's loopback; a name such as `127.example.com` is not.
    public static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let loopback = in6addr_loopback
            return withUnsafeBytes(of: v6) { address in withUnsafeBytes(of: loopback) { address.elementsEqual($0) } }
        }
        return false
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
