import Hummingbird
public import NIOCore

/// The request context of the ECR Public API: Hummingbird's core storage plus the peer address,
/// which is recorded with every event as `sourceAddress`.
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who signed the request. The seam for authentication: a verifying middleware (SigV4, a
    /// later issue) sets it, and every event the request records carries it in its metadata.
    /// Until then nothing verifies signatures and it stays `nil`.
    public var principal: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Request bodies up to this size are read; larger ones are refused with 413. A 20 MiB part is
    /// about 28 MB once base64-encoded in JSON.
    public var maxUploadSize: Int { 30_000_000 }
}
