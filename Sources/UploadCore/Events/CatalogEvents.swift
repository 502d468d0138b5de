/// A repository's catalog data was set, replacing what it had (CreateRepository with
/// `catalogData`, PutRepositoryCatalogData). Members not given are absent (lists empty).
@FieldRecord
public struct RepositoryCatalogDataPut: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryCatalogDataPut
    public var event: Event { .repositoryCatalogDataPut(self) }

    public let registryId: String
    public let repositoryName: String
    public let description: String?
    public let architectures: [String]
    public let operatingSystems: [String]
    /// The logo's digest: its bytes are in the blob store, never in the log.
    public let logoImageDigest: String?
    public let aboutText: String?
    public let usageText: String?

    enum FieldTag: UInt64 {
        case registryId = 1, repositoryName, description, architectures, operatingSystems, logoImageDigest, aboutText, usageText
    }
}

/// Tags were put on a repository: each key takes its value, whether or not it had one.
@FieldRecord
public struct RepositoryTagged: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryTagged
    public var event: Event { .repositoryTagged(self) }

    public let registryId: String
    public let repositoryName: String
    /// Sorted by their bytes, without repeats; `tagValues` holds each one's value at its index.
    public let tagKeys: [String]
    public let tagValues: [String]

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, tagKeys, tagValues }

    public func validate() throws(CodecError) {
        guard tagKeys.count == tagValues.count else {
            throw CodecError("\(Self.recordName) has \(tagKeys.count) keys but \(tagValues.count) values")
        }
        guard !tagKeys.isEmpty, tagKeys.isInByteOrderWithoutRepeats else {
            throw CodecError("\(Self.recordName)'s keys are not one or more in byte order without repeats")
        }
    }
}

/// Tags were taken off a repository, by key. Every key named had a tag.
@FieldRecord
public struct RepositoryUntagged: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryUntagged
    public var event: Event { .repositoryUntagged(self) }

    public let registryId: String
    public let repositoryName: String
    /// Sorted by their bytes, without repeats.
    public let tagKeys: [String]

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, tagKeys }

    public func validate() throws(CodecError) {
        guard !tagKeys.isEmpty, tagKeys.isInByteOrderWithoutRepeats else {
            throw CodecError("\(Self.recordName)'s keys are not one or more in byte order without repeats")
        }
    }
}

/// The registry's catalog data was set (PutRegistryCatalogData).
@FieldRecord
public struct RegistryCatalogDataPut: EventPayload {
    public static let type = EventType.registryCatalogDataPut
    public var event: Event { .registryCatalogDataPut(self) }

    public let registryId: String
    public let displayName: String

    enum FieldTag: UInt64 { case registryId = 1, displayName }
}

/// A repository's policy was set, replacing any it had (SetRepositoryPolicy). The text is kept
/// exactly as sent; every request on the repository is judged by it from then on.
@FieldRecord
public struct RepositoryPolicySet: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryPolicySet
    public var event: Event { .repositoryPolicySet(self) }

    public let registryId: String
    public let repositoryName: String
    public let policyText: String

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, policyText }
}

/// A repository's policy was deleted (DeleteRepositoryPolicy): `policyText` is the one it had.
@FieldRecord
public struct RepositoryPolicyDeleted: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryPolicyDeleted
    public var event: Event { .repositoryPolicyDeleted(self) }

    public let registryId: String
    public let repositoryName: String
    public let policyText: String

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, policyText }
}
