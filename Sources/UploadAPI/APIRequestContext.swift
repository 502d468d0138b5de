import Hummingbird
public import NIOCore

/// The request context of the ECR Public API: Hummingbird's core storage plus the peer address,
/// which is recorded with every event as `sourceAddress`.
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who signed the request, when a middleware authenticated it (see `ECRPublicService.router`);
    /// otherwise the service's own SigV4 check names the principal. Every event the request
    /// records carries it in its metadata.
    public var principal: String?
    /// The request's connection (for ``InterimContinue``).
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// Request bodies up to this size are read; larger ones are refused with 413. A 20 MiB part is
    /// about 28 MB once base64-encoded in JSON.
    public var maxUploadSize: Int { Self.largestBody }

    /// The largest request body the API reads (413 beyond): a 20 MiB part in base64, and its JSON.
    public static let largestBody = 30_000_000
}

extension SocketAddress {
    /// The peer as events record it (`sourceAddress`): `<ip>:<port>`.
    var recordedForm: String? { ipAddress.map { "\($0):\(port ?? 0)" } }
}
