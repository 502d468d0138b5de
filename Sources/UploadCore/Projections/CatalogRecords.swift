/// What a repository carries besides its images and uploads: its catalog data, its tags and its
/// policy (the `repository-details` view). Few events change it, so it is kept apart from
/// ``RepositorySummary``, which every upload rewrites.
@FieldRecord
public struct RepositoryDetails: FieldRecord {
    public var description: String?
    public var architectures: [String] = []
    public var operatingSystems: [String] = []
    public var logoImageDigest: String?
    public var aboutText: String?
    public var usageText: String?
    /// Sorted by their bytes, without repeats; `tagValues` holds each one's value at its index.
    public var tagKeys: [String] = []
    public var tagValues: [String] = []
    /// The repository policy, exactly as set.
    public var policyText: String?

    enum FieldTag: UInt64 {
        case description = 1, architectures, operatingSystems, logoImageDigest, aboutText, usageText, tagKeys, tagValues, policyText
    }

    public static var recordName: String { "repository details" }

    public init() {}

    public func validate() throws(CodecError) {
        guard tagKeys.count == tagValues.count else {
            throw CodecError("\(Self.recordName) has \(tagKeys.count) tag keys but \(tagValues.count) values")
        }
        guard tagKeys.isInByteOrderWithoutRepeats else { throw CodecError("\(Self.recordName)'s tag keys are not in byte order without repeats") }
    }

    /// The tags as (key, value) pairs, in key order.
    public var tags: [(key: String, value: String)] { Array(zip(tagKeys, tagValues)) }

    /// Puts each tag, replacing the value of a key already there; keys stay in byte order.
    public mutating func put(tags: [(key: String, value: String)]) {
        var merged = self.tags.filter { old in !tags.contains { $0.key.sameBytes(as: old.key) } } + tags
        merged.sort { $0.key.precedesByBytes($1.key) }
        tagKeys = merged.map(\.key)
        tagValues = merged.map(\.value)
    }

    /// Takes the tags of `keys` off.
    public mutating func remove(tagKeys keys: [String]) {
        let kept = tags.filter { tag in !keys.contains { $0.sameBytes(as: tag.key) } }
        tagKeys = kept.map(\.key)
        tagValues = kept.map(\.value)
    }

    /// The value of the tag `key`, if there is one.
    public func tag(_ key: String) -> String? { tags.first { $0.key.sameBytes(as: key) }?.value }

    /// Sets every catalog member from the event, leaving the tags as they are.
    public mutating func setCatalog(_ e: RepositoryCatalogDataPut) {
        description = e.description
        architectures = e.architectures
        operatingSystems = e.operatingSystems
        logoImageDigest = e.logoImageDigest
        aboutText = e.aboutText
        usageText = e.usageText
    }
}

extension RepositoryDetails {
    /// Details holding just the catalog data `e` sets: what the call that recorded it answers.
    public init(catalog e: RepositoryCatalogDataPut) {
        self.init()
        setCatalog(e)
    }
}

/// A registry's catalog data (the `registries` view).
@FieldRecord
public struct RegistryCatalog: FieldRecord {
    public var displayName: String

    enum FieldTag: UInt64 { case displayName = 1 }
    public static var recordName: String { "registry catalog" }
}
