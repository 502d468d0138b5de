/// A layer part's bytes were staged, synced, and accepted as the upload's next part.
public struct LayerPartUploaded: EventPayload {
    public static let type = EventType.layerPartUploaded
    public static let schemaVersion: UInt32 = 1

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let partFirstByte: UInt64
    public let partLastByte: UInt64
    /// `sha256:<hex>` of the part's bytes.
    public let partDigest: String

    public init(uploadId: String, registryId: String, repositoryName: String, partFirstByte: UInt64, partLastByte: UInt64, partDigest: String) {
        self.uploadId = uploadId
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.partFirstByte = partFirstByte
        self.partLastByte = partLastByte
        self.partDigest = partDigest
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }
    public var partLength: UInt64 { partLastByte - partFirstByte + 1 }

    public func encode(into w: inout FieldWriter) {
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.uint(4, partFirstByte)
        w.uint(5, partLastByte)
        w.string(6, partDigest)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 6)
        uploadId = try f.string(1, "uploadId")
        registryId = try f.string(2, "registryId")
        repositoryName = try f.string(3, "repositoryName")
        partFirstByte = try f.uint(4, "partFirstByte")
        partLastByte = try f.uint(5, "partLastByte")
        partDigest = try f.string(6, "partDigest")
        guard partLastByte >= partFirstByte else { throw CodecError("\(Self.type.name) has an empty byte range") }
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)), ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)),
            ("partFirstByte", .uint(partFirstByte)), ("partLastByte", .uint(partLastByte)), ("partDigest", .string(partDigest)),
        ])
    }
}

/// An upload ended with a layer whose digest matched one the caller named. Its bytes are in the
/// blob store under that digest.
public struct LayerUploadCompleted: EventPayload {
    public static let type = EventType.layerUploadCompleted
    public static let schemaVersion: UInt32 = 1

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let layerDigest: String
    public let layerSize: UInt64

    public init(uploadId: String, registryId: String, repositoryName: String, layerDigest: String, layerSize: UInt64) {
        self.uploadId = uploadId
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.layerDigest = layerDigest
        self.layerSize = layerSize
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.string(4, layerDigest)
        w.uint(5, layerSize)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 5)
        uploadId = try f.string(1, "uploadId")
        registryId = try f.string(2, "registryId")
        repositoryName = try f.string(3, "repositoryName")
        layerDigest = try f.string(4, "layerDigest")
        layerSize = try f.uint(5, "layerSize")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)), ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)),
            ("layerDigest", .string(layerDigest)), ("layerSize", .uint(layerSize)),
        ])
    }
}
