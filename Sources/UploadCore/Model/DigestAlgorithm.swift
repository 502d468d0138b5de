/// The digest algorithms of content a registry client may name, and blobs are stored under: the
/// OCI image spec's registered ones.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha256, sha512

    /// The algorithm of an `<algorithm>:<hex>` digest, when it is one of these.
    public init?(of digest: String) {
        self.init(rawValue: String(digest.prefix { $0 != ":" }))
    }

    /// The digest of no bytes: an empty blob's.
    public var emptyDigest: String {
        switch self {
        case .sha256: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        case .sha512: "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        }
    }

    /// How many hex digits its digests have.
    public var hexCount: Int {
        switch self {
        case .sha256: 64
        case .sha512: 128
        }
    }
}
