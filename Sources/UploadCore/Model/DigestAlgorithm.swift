/// The digest algorithms of content a registry client may name, and blobs are stored under: the
/// OCI image spec's registered ones.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha256, sha512

    /// The algorithm of an `<algorithm>:<hex>` digest, when it is one of these.
    public init?(of digest: String) {
        self.init(rawValue: String(digest.prefix { $0 != ":" }))
    }

    /// How many hex digits its digests have.
    public var hexCount: Int {
        switch self {
        case .sha256: 64
        case .sha512: 128
        }
    }
}
