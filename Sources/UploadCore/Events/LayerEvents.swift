/// A layer part's bytes were staged, synced, and accepted as the upload's next part.
@FieldRecord
public struct LayerPartUploaded: EventPayload, RepositoryScoped {
    public static let type = EventType.layerPartUploaded
    public var event: Event { .layerPartUploaded(self) }

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let partFirstByte: UInt64
    public let partLastByte: UInt64
    /// `sha256:<hex>` of the part's bytes.
    public let partDigest: String

    enum FieldTag: UInt64 { case uploadId = 1, registryId, repositoryName, partFirstByte, partLastByte, partDigest }

    public var partLength: UInt64 { partLastByte - partFirstByte + 1 }

    /// The largest byte offset a part may end at: the API's offsets are `Long`s, and a range
    /// ending higher would overflow the byte counts folded from it.
    public static let greatestLastByte = UInt64(Int64.max)

    public func validate() throws(CodecError) {
        guard partLastByte >= partFirstByte else { throw CodecError("\(Self.recordName) has an empty byte range") }
        guard partLastByte <= Self.greatestLastByte else { throw CodecError("\(Self.recordName) ends past byte \(Self.greatestLastByte)") }
    }
}

/// An upload ended with a layer whose digest matched one the caller named. Its bytes are in the
/// blob store under that digest.
@FieldRecord
public struct LayerUploadCompleted: EventPayload, RepositoryScoped {
    public static let type = EventType.layerUploadCompleted
    public var event: Event { .layerUploadCompleted(self) }

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let layerDigest: String
    public let layerSize: UInt64

    enum FieldTag: UInt64 { case uploadId = 1, registryId, repositoryName, layerDigest, layerSize }
}

/// A layer that another repository holds, or that the blob store holds, was made available in this
/// repository without its bytes moving (a registry client's cross-repository mount).
@FieldRecord
public struct LayerMounted: EventPayload, RepositoryScoped {
    public static let type = EventType.layerMounted
    public var event: Event { .layerMounted(self) }

    public let registryId: String
    public let repositoryName: String
    public let layerDigest: String
    public let layerSize: UInt64
    /// The repository it was mounted from; `nil` when the client named none and the blob store held it.
    public let fromRepositoryName: String?

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, layerDigest, layerSize, fromRepositoryName }
}
