import LogHashing

/// A repository's catalog data as given (RepositoryCatalogDataInput), within the model's bounds.
/// The logo is named by the digest of its bytes: the service keeps the bytes in the blob store
/// before the command is decided, and the log records the digest only.
public struct RepositoryCatalogInput: Sendable, Equatable {
    public static let largestLogoBytes = 512_000

    public let description: String?
    public let architectures: [String]
    public let operatingSystems: [String]
    public let logoImageDigest: String?
    public let aboutText: String?
    public let usageText: String?

    /// - Parameter logoImage: the logo's bytes, decoded from base64; none or empty means no logo.
    public init(
        description: String? = nil, architectures: [String]? = nil, operatingSystems: [String]? = nil, logoImage: [UInt8]? = nil,
        aboutText: String? = nil, usageText: String? = nil, member: String = "catalogData"
    ) throws(CommandError) {
        if let description { try Validation.length(description, member: "\(member).description", min: 0, max: 1024) }
        if let aboutText { try Validation.length(aboutText, member: "\(member).aboutText", min: 0, max: 25_600) }
        if let usageText { try Validation.length(usageText, member: "\(member).usageText", min: 0, max: 25_600) }
        self.architectures = try Self.names(architectures ?? [], member: "\(member).architectures")
        self.operatingSystems = try Self.names(operatingSystems ?? [], member: "\(member).operatingSystems")
        if let logoImage, logoImage.count > Self.largestLogoBytes {
            throw CommandError(.invalidParameter, "1 validation error detected: '\(member).logoImageBlob' must be at most \(Self.largestLogoBytes) bytes; it is \(logoImage.count).")
        }
        self.description = description
        self.aboutText = aboutText
        self.usageText = usageText
        logoImageDigest = logoImage.flatMap { $0.isEmpty ? nil : Hex.sha256Digest($0) }
    }

    /// ArchitectureList, OperatingSystemList: at most 50 names of 1 to 50 characters.
    private static func names(_ names: [String], member: String) throws(CommandError) -> [String] {
        guard names.count <= 50 else {
            throw CommandError(.invalidParameter, "1 validation error detected: '\(member)' must have at most 50 items; it has \(names.count).")
        }
        for name in names { try Validation.length(name, member: member, min: 1, max: 50) }
        return names
    }
}

/// A list of tags (TagList) as given: each key 1 to 128 characters and each value up to 256, of
/// letters, digits, spaces and `_ . : / = + - @`, no key twice, none under the reserved `aws:`.
/// Refusals are `InvalidTagParameterException`, as in ECR.
public struct ResourceTags: Sendable, Equatable {
    /// The most tags one resource may have (TooManyTagsException beyond).
    public static let mostPerResource = 50

    /// Sorted by key bytes.
    public let keys: [String]
    public let values: [String]

    public var count: Int { keys.count }
    public var pairs: [(key: String, value: String)] { Array(zip(keys, values)) }

    public init(_ tags: [(key: String?, value: String?)]?, member: String = "tags") throws(CommandError) {
        let tags = tags ?? []
        guard tags.count <= 200 else {
            throw CommandError(.invalidParameter, "1 validation error detected: '\(member)' must have at most 200 items; it has \(tags.count).")
        }
        var pairs: [(key: String, value: String)] = []
        for tag in tags {
            guard let key = tag.key else { throw Self.invalid("Every tag needs a Key") }
            let value = tag.value ?? ""
            try Self.check(key: key)
            guard value.unicodeScalars.count <= 256 else { throw Self.invalid("The value of tag '\(Validation.quoted(key))' is longer than 256 characters") }
            guard Self.allowed(value) else { throw Self.invalid("The value of tag '\(Validation.quoted(key))' has a character tags may not hold (letters, digits, spaces and _ . : / = + - @ only)") }
            guard !pairs.contains(where: { $0.key.sameBytes(as: key) }) else { throw Self.invalid("The tag key '\(Validation.quoted(key))' is given twice") }
            pairs.append((key, value))
        }
        pairs.sort { $0.key.precedesByBytes($1.key) }
        keys = pairs.map(\.key)
        values = pairs.map(\.value)
    }

    /// A tag key as UntagResource names it: the same rules as a key being put.
    public static func key(_ key: String) throws(CommandError) -> String {
        try check(key: key)
        return key
    }

    private static func check(key: String) throws(CommandError) {
        guard (1...128).contains(key.unicodeScalars.count) else { throw invalid("The tag key '\(Validation.quoted(key))' must be 1 to 128 characters") }
        guard !key.lowercased().hasPrefix("aws:") else { throw invalid("The tag key '\(Validation.quoted(key))' uses the prefix aws:, which is reserved for AWS") }
        guard allowed(key) else { throw invalid("The tag key '\(Validation.quoted(key))' has a character tags may not hold (letters, digits, spaces and _ . : / = + - @ only)") }
    }

    /// `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, IAM's pattern for tags.
    private static func allowed(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { scalar in
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .spaceSeparator, .lineSeparator, .paragraphSeparator, .decimalNumber, .letterNumber, .otherNumber:
                true
            default:
                "_.:/=+-@".unicodeScalars.contains(scalar)
            }
        }
    }

    private static func invalid(_ message: String) -> CommandError { CommandError(.invalidTagParameter, message) }
}

/// A repository named by its ARN, `arn:aws:ecr-public::<registryId>:repository/<name>`: the only
/// resources that take tags here. Anything else is `InvalidParameterException`.
public struct RepositoryARN: Sendable, Equatable {
    public let registryId: String
    public let repositoryName: String

    public init(_ arn: String?, member: String = "resourceArn") throws(CommandError) {
        guard let arn else { throw Validation.missing(member) }
        try Validation.length(arn, member: member, min: 1, max: 2048)
        let prefix = "arn:aws:ecr-public::"
        let parts = arn.hasPrefix(prefix) ? arn.dropFirst(prefix.count).split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false) : []
        guard parts.count == 2, parts[1].hasPrefix("repository/") else {
            throw CommandError(.invalidParameter, "Invalid parameter at '\(member)': '\(Validation.quoted(arn))' is not a repository ARN of the form arn:aws:ecr-public::<registryId>:repository/<repositoryName>")
        }
        registryId = try Validation.accountRegistryId(String(parts[0]), member: member) ?? ""
        repositoryName = try Validation.repositoryName(String(parts[1].dropFirst("repository/".count)), member: member)
    }
}

/// Sets a repository's catalog data, replacing what it had.
public struct PutRepositoryCatalogData: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String
    public let catalog: RepositoryCatalogInput

    public init(registryId: String? = nil, repositoryName: String?, catalog: RepositoryCatalogInput?) throws(CommandError) {
        self.registryId = try Validation.accountRegistryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let catalog else { throw Validation.missing("catalogData") }
        self.catalog = catalog
    }
}

/// Puts tags on a repository, named by its ARN.
public struct TagResource: Sendable, Equatable {
    public let resource: RepositoryARN
    public let tags: ResourceTags

    public init(resourceArn: String?, tags: [(key: String?, value: String?)]?) throws(CommandError) {
        resource = try RepositoryARN(resourceArn)
        guard let tags else { throw Validation.missing("tags") }
        self.tags = try ResourceTags(tags)
    }
}

/// Takes tags off a repository, named by its ARN, by key. Keys it does not have are ignored.
public struct UntagResource: Sendable, Equatable {
    public let resource: RepositoryARN
    /// Sorted by their bytes, without repeats.
    public let tagKeys: [String]

    public init(resourceArn: String?, tagKeys: [String]?) throws(CommandError) {
        resource = try RepositoryARN(resourceArn)
        guard let tagKeys else { throw Validation.missing("tagKeys") }
        guard tagKeys.count <= 200 else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'tagKeys' must have at most 200 items; it has \(tagKeys.count).")
        }
        var keys: [String] = []
        for key in tagKeys { keys.insertInByteOrder(try ResourceTags.key(key)) }
        self.tagKeys = keys
    }
}

/// Sets the registry's display name (RegistryCatalogData).
public struct PutRegistryCatalogData: Sendable, Equatable {
    /// `nil` when the request named none: nothing changes.
    public let displayName: String?

    public init(displayName: String?) throws(CommandError) {
        if let displayName { try Validation.length(displayName, member: "displayName", min: 0, max: 100) }
        self.displayName = displayName
    }
}

/// Sets a repository's policy, checked as ``RepositoryPolicy`` reads it.
public struct SetRepositoryPolicy: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String
    /// Exactly as sent, once it reads as a ``RepositoryPolicy``.
    public let policyText: String
    /// Set it even when it would deny its caller SetRepositoryPolicy (a lockout).
    public let force: Bool

    public init(registryId: String? = nil, repositoryName: String?, policyText: String?, force: Bool = false) throws(CommandError) {
        self.registryId = try Validation.accountRegistryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let policyText else { throw Validation.missing("policyText") }
        _ = try RepositoryPolicy(policyText)
        self.policyText = policyText
        self.force = force
    }
}

public struct DeleteRepositoryPolicy: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String

    public init(registryId: String? = nil, repositoryName: String?) throws(CommandError) {
        self.registryId = try Validation.accountRegistryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
    }
}
