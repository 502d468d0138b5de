import UploadStore

/// The `HOST:PORT` clients reach this server by: what each `repositoryUri` names, so that a push
/// to it lands here, and where a repository's `logoUrl` points. `serve --public-endpoint` names it;
/// otherwise it is the address listened on, known once the server is bound (port 0 picks one).
public final class PublicEndpoint: Sendable {
    private let configured: String?
    private let listening = Locked<String?>(nil)

    public init(_ configured: String? = nil) { self.configured = configured }

    /// Notes the address the server is bound to; a configured endpoint still wins.
    public func bound(host: String, port: Int) {
        let shown = host.contains(":") ? "[\(host)]" : host  // an IPv6 address in brackets, as in a URL
        listening.withLock { $0 = "\(shown):\(port)" }
    }

    /// The configured endpoint's host, if one was configured.
    var configuredHost: String? { configured.flatMap { Loopback.host(ofAuthority: $0) } }

    /// The endpoint, or `localhost` before the server is bound (only ever seen by tests that
    /// call the service without a server).
    public var hostAndPort: String { configured ?? listening.withLock { $0 } ?? "localhost" }

    /// Whether `value` is a host, optionally with a port, and nothing else: no scheme, path, user
    /// or space.
    public static func isHostAndPort(_ value: String) -> Bool {
        guard !value.isEmpty, value.utf8.count <= 255 else { return false }
        let host: Substring, port: Substring?
        if value.hasPrefix("[") {
            guard let close = value.firstIndex(of: "]") else { return false }
            host = value[value.index(after: value.startIndex)..<close]
            let rest = value[value.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { return false }
            port = rest.isEmpty ? nil : rest.dropFirst()
            guard host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
        } else {
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return false }
            host = parts[0]
            port = parts.count == 2 ? parts[1] : nil
            guard host.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == ".") }) else {
                return false
            }
        }
        guard !host.isEmpty else { return false }
        if let port {
            guard let number = Int(port), (1...65_535).contains(number), port.allSatisfy(\.isASCII) else { return false }
        }
        return true
    }
}
