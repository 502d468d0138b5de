/// Whose rules a layer's parts and completion follow: the front end that sent the command.
///
/// ECR Public's API bounds its parts (LayerPartBlob: at most 20 MiB; every part but the last at
/// least 5 MiB; at most ``DecisionSettings/maximumParts``; at least one). A registry client's
/// chunks (OCI distribution `PATCH`) may have any size, and a blob may be empty.
public enum PartRules: Sendable, Equatable {
    case ecrPublic
    case registry
}

/// Records a layer part whose bytes the front end has already staged and synced.
///
/// The bytes never reach the domain: the command carries the part's range, length and SHA-256.
public struct UploadLayerPart: Sendable, Equatable {
    /// The largest part the API accepts (LayerPartBlob's maximum).
    public static let maximumPartBytes: UInt64 = 20_971_520

    public let registryId: String?
    public let repositoryName: String
    public let uploadId: String
    public let partFirstByte: UInt64
    public let partLastByte: UInt64
    /// The decoded length of `layerPartBlob`.
    public let partLength: UInt64
    /// `sha256:<hex>` of the part's bytes; identifies an exact retry of the last part.
    public let partDigest: String
    /// Whether the caller has staged and synced the part's bytes. A part is recorded only then;
    /// unstaged, a command can only be answered as a retry or refused.
    public var staged = false
    public let rules: PartRules

    public init(
        registryId: String? = nil, repositoryName: String?, uploadId: String?,
        partFirstByte: Int64?, partLastByte: Int64?, partLength: UInt64, partDigest: String
    ) throws(CommandError) {
        self.init(
            try Placement(registryId: registryId, repositoryName: repositoryName, uploadId: uploadId,
                          partFirstByte: partFirstByte, partLastByte: partLastByte),
            partLength: partLength, partDigest: partDigest)
    }

    /// The part, once its bytes have been counted and hashed.
    public init(_ placement: Placement, partLength: UInt64, partDigest: String) {
        registryId = placement.registryId
        repositoryName = placement.repositoryName
        uploadId = placement.uploadId
        partFirstByte = placement.partFirstByte
        partLastByte = placement.partLastByte
        rules = placement.rules
        self.partLength = partLength
        self.partDigest = partDigest
    }

    public var placement: Placement {
        Placement(registryId: registryId, repositoryName: repositoryName, uploadId: uploadId, partFirstByte: partFirstByte, partLastByte: partLastByte, rules: rules)
    }

    /// Where a part goes, as its request names it: known, and checked, before its bytes are read.
    public struct Placement: Sendable, Equatable {
        public let registryId: String?
        public let repositoryName: String
        public let uploadId: String
        public let partFirstByte: UInt64
        public let partLastByte: UInt64
        public let rules: PartRules

        public init(
            registryId: String? = nil, repositoryName: String?, uploadId: String?, partFirstByte: Int64?, partLastByte: Int64?
        ) throws(CommandError) {
            self.registryId = try Validation.registryId(registryId)
            self.repositoryName = try Validation.repositoryName(repositoryName)
            self.uploadId = try Validation.uploadId(uploadId)
            self.partFirstByte = try Validation.partOffset(partFirstByte, member: "partFirstByte")
            self.partLastByte = try Validation.partOffset(partLastByte, member: "partLastByte")
            rules = .ecrPublic
        }

        /// A registry client's chunk of an upload, at the offset the upload has reached: its
        /// length is known only once its streamed bytes have been staged.
        public init(registryChunkOf upload: RepositoryUpload, at offset: UInt64, length: UInt64) {
            precondition(length > 0, "an empty chunk records nothing")
            self.init(registryId: upload.repository.registryId, repositoryName: upload.repository.repositoryName, uploadId: upload.uploadId,
                      partFirstByte: offset, partLastByte: offset + length - 1, rules: .registry)
        }

        fileprivate init(registryId: String?, repositoryName: String, uploadId: String, partFirstByte: UInt64, partLastByte: UInt64, rules: PartRules) {
            self.registryId = registryId
            self.repositoryName = repositoryName
            self.uploadId = uploadId
            self.partFirstByte = partFirstByte
            self.partLastByte = partLastByte
            self.rules = rules
        }
    }
}

/// A part's bytes as a front end holds them (raw, or still base64 in the request), visited a
/// chunk at a time so that they are never copied whole. The domain never reads them; the
/// application layer stages and hashes them.
public protocol PartBytes: Sendable {
    /// How many bytes the part holds (decoded).
    var byteCount: UInt64 { get }
    /// Calls `body` with the bytes in order, a chunk at a time; each chunk is valid only during
    /// its call. Throws when the bytes turn out malformed (bad base64).
    func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws
}

extension Array: PartBytes where Element == UInt8 {
    public var byteCount: UInt64 { UInt64(count) }
    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try withUnsafeBytes { try body($0) }
    }
}

/// Ends an upload with a layer. The caller hashes the staged bytes first and passes the result as
/// `staged`; without it the command can only be answered as a retry or refused.
public struct CompleteLayerUpload: Sendable, Equatable {
    public struct StagedLayer: Sendable, Equatable {
        /// `<algorithm>:<hex>` of all staged bytes: sha256, or the registry client's named algorithm.
        public let digest: String
        public let size: UInt64
        public init(digest: String, size: UInt64) {
            self.digest = digest
            self.size = size
        }
    }

    public let registryId: String?
    public let repositoryName: String
    public let uploadId: String
    public let layerDigests: [String]
    public var staged: StagedLayer?
    public let rules: PartRules

    public init(registryId: String? = nil, repositoryName: String?, uploadId: String?, layerDigests: [String]?) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        self.uploadId = try Validation.uploadId(uploadId)
        self.layerDigests = try Validation.layerDigests(layerDigests)
        rules = .ecrPublic
    }

    /// A registry client's `PUT …?digest=`: the one digest it names (already checked by the front
    /// end: ``Validation/isRegistryDigest(_:)``).
    public init(registryUpload upload: RepositoryUpload, digest: String) {
        registryId = upload.repository.registryId
        repositoryName = upload.repository.repositoryName
        uploadId = upload.uploadId
        layerDigests = [digest]
        rules = .registry
    }

    /// Whether the caller named `digest` among its layer digests (in any case).
    public func names(_ digest: String) -> Bool { layerDigests.contains { $0.lowercased() == digest } }
}

/// An upload as a registry client names it: the repository in its path, and the session id.
public struct RepositoryUpload: Sendable, Equatable {
    public let repository: RepositoryRef
    public let uploadId: String
    public init(_ repository: RepositoryRef, uploadId: String) {
        self.repository = repository
        self.uploadId = uploadId
    }
}

/// Ends an upload without a layer at its client's request (a registry client's `DELETE` of its
/// upload session): UploadAborted, reason `cancelled`.
public struct CancelLayerUpload: Sendable, Equatable {
    public let upload: RepositoryUpload
    public init(_ upload: RepositoryUpload) { self.upload = upload }
}

/// Makes a layer another repository holds available in this one, without its bytes moving (a
/// registry client's cross-repository mount): LayerMounted.
public struct MountLayer: Sendable, Equatable {
    public let repository: RepositoryRef
    /// A valid digest (``Validation/isRegistryDigest(_:)``), lowercase.
    public let layerDigest: String
    /// Where the layer is known: a repository of this registry, or, when the client named none,
    /// the blob store itself.
    public let source: Source

    public enum Source: Sendable, Equatable {
        case repository(String)
        /// The blob store holds these bytes, of this size; the front end looked before asking.
        case blobStore(size: UInt64)
    }

    public init(into repository: RepositoryRef, layerDigest: String, from source: Source) {
        self.repository = repository
        self.layerDigest = layerDigest
        self.source = source
    }
}
