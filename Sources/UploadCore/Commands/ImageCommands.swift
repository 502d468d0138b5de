import Crypto
import Foundation
import JSONGrammar
import LogHashing

/// Stores an image manifest under its digest, optionally tagging it.
///
/// The initialiser parses the manifest (to learn the blobs and images it references and its media
/// type) and computes its digest, `sha256:` + hex(SHA-256 of the manifest's UTF-8 bytes), or
/// SHA-512 when a registry client named it by a `sha512:` digest: pure computation on the
/// request, so it belongs to validation.
public struct PutImage: Sendable, Equatable {
    public static let maximumManifestBytes = 4_194_304
    /// The most JSON values a pushed manifest may hold: an index of a thousand platforms, or an
    /// image of hundreds of layers with their annotations, holds tens of thousands at most.
    public static let maximumManifestValues = 100_000

    public let registryId: String?
    public let repositoryName: String
    /// Exactly as sent; stored byte for byte.
    public let imageManifest: String
    public let imageManifestMediaType: String
    public private(set) var imageTag: String?
    public let imageDigest: String
    /// The digest the caller claimed, when it sent one.
    public let claimedDigest: String?
    /// The config's media type, for DescribeImages' `artifactMediaType`.
    public let artifactMediaType: String?
    /// The config blob an image manifest references.
    public let config: Manifest.Descriptor?
    /// The layer blobs an image manifest references, in manifest order.
    public let layers: [Manifest.Descriptor]
    /// Images a manifest list or index references.
    public let referencedImages: [Manifest.Descriptor]
    /// Why the manifest may not be stored anew (``Manifest/pushRefusal``): a rule added after
    /// manifests were first stored. The decider refuses it only where the repository does not
    /// already hold this manifest, so that an image stored before the rule can still be tagged.
    public let refusalUnlessStored: CommandError?

    /// - Parameter sha512Allowed: whether the caller may name the manifest by a SHA-512 digest, as
    ///   a registry client may. ECR's PutImage names every image by SHA-256, so there a `sha512:`
    ///   digest does not match (else the same manifest could be stored under two digests).
    public init(
        registryId: String? = nil, repositoryName: String?, imageManifest: String?, imageManifestMediaType: String? = nil,
        imageTag: String? = nil, imageDigest: String? = nil, sha512Allowed: Bool = false
    ) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let imageManifest else { throw Validation.missing("imageManifest") }
        let bytes = Array(imageManifest.utf8)
        // Bytes, where the model counts characters: one bound for both APIs (distribution's 4 MiB
        // manifests), on what is hashed, stored and sent.
        guard (1...Self.maximumManifestBytes).contains(bytes.count) else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'imageManifest' must be 1 to \(Self.maximumManifestBytes) bytes; it is \(bytes.count).")
        }
        // Counted before any parse: a 4 MiB text of small numbers is millions of values, each
        // parsed several times (here, by the projector, by referrers lists) on shared threads.
        guard !JSONGrammar.holdsMoreValues(than: Self.maximumManifestValues, bytes) else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'imageManifest' holds more than \(Self.maximumManifestValues) JSON values.")
        }
        self.imageManifest = imageManifest
        self.imageTag = try Validation.imageTag(imageTag)
        self.claimedDigest = imageDigest
        // SHA-256 unless a registry client named its manifest by a SHA-512 digest.
        self.imageDigest = sha512Allowed && imageDigest.flatMap { DigestAlgorithm(of: $0.lowercased()) } == .sha512
            ? "sha512:" + Hex.encode(SHA512.hash(data: bytes)) : Hex.sha256Digest(bytes)

        let manifest = try Manifest(parsing: bytes, given: imageManifestMediaType, checkingPush: true)
        self.refusalUnlessStored = manifest.pushRefusal
        self.imageManifestMediaType = manifest.mediaType ?? ""
        self.artifactMediaType = manifest.config?.mediaType
        self.config = manifest.config
        self.layers = manifest.layers
        self.referencedImages = manifest.images
    }
}

extension PutImage {
    /// The same push under `tag` (a registry push by digest with `tag` parameters), the manifest
    /// not parsed again.
    public func tagged(_ tag: String) throws(CommandError) -> PutImage {
        var push = self
        push.imageTag = try Validation.imageTag(tag)
        return push
    }

    /// What a repository that holds nothing yet (one a registry push would create) refuses this
    /// manifest for, as the decider decides it there; `nil` when it would be stored.
    public var refusalInAnEmptyRepository: CommandError? { ImageDecisions.refusalInAnEmptyRepository(self) }
}

/// What PutImage needs from a manifest: its media type and the digests it references, after
/// checking its structure against the media type (OCI image-spec v1.1; Docker's schema 2). The
/// projector reads a stored manifest again with it (which layers' media types it names, which
/// images an index lists): parsing is pure, so replay gets the same answer.
public struct Manifest: Sendable {
    /// The manifest types this coordinator stores: images and indexes, OCI's and Docker's schema 2.
    /// (Docker's schema 1 is refused: it names layers in a form no longer pushed, `fsLayers`.)
    static let imageTypes: Set<String> = [
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    ]
    static let indexTypes: Set<String> = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    ]

    /// A blob or manifest a manifest names, with the media type and the size it gives it.
    public struct Descriptor: Sendable, Equatable {
        public var mediaType: String
        public var digest: String
        public var size: UInt64
    }

    public private(set) var mediaType: String?
    /// An image manifest's config blob.
    public private(set) var config: Descriptor?
    /// An image manifest's distributable layers, in manifest order.
    public private(set) var layers: [Descriptor] = []
    /// The images an index lists, in manifest order.
    public private(set) var images: [Descriptor] = []
    /// The manifest this one refers to (its `subject`'s digest), when that is a digest: what the
    /// referrers API lists it under.
    public private(set) var subject: String?
    /// Why a push of this manifest is refused by a rule added after manifests were first stored:
    /// a `subject` (the manifest it refers to) that is not a descriptor, a member spelled as a
    /// known one in another case, or a leading byte-order mark, each of which registry clients
    /// read otherwise than this parser does. PutImage refuses it where the repository does not
    /// hold it already; the projector, which reads again manifests stored before these rules,
    /// does not (nor spends the time to judge it).
    /// `nil` unless asked for (`checkingPush`).
    public private(set) var pushRefusal: CommandError?

    /// The config and the layers an image manifest names (none for an index).
    public var blobs: [Descriptor] { (config.map { [$0] } ?? []) + layers }

    /// - Parameters:
    ///   - given: `imageManifestMediaType`, when the caller sent one.
    ///   - checkingPush: whether to judge ``pushRefusal``: for a push, not a replay.
    public init(parsing bytes: [UInt8], given: String?, checkingPush: Bool = false) throws(CommandError) {
        // Parsed as Foundation parsed manifests when some were stored, so that a replay reads
        // those alike on any toolchain; a push is held to RFC 8259 besides (``pushRefusal``).
        let object: ParsedJSON
        do { object = try ParsedJSON(parsing: bytes, grammar: .foundationsLegacy) } catch { throw Self.invalid("is not JSON: \(error)") }
        guard object.isObject else { throw Self.invalid("is not a JSON object") }
        guard object[member: "schemaVersion"]?.integer == 2 else {
            throw Self.invalid("must have schemaVersion 2")
        }
        let declared = try Self.optionalString(object, "mediaType", in: "the manifest")
        if let given, let declared, given != declared {
            throw CommandError(.invalidParameter, "The imageManifestMediaType '\(Validation.quoted(given))' does not match the manifest's mediaType '\(Validation.quoted(declared))'.")
        }
        guard let mediaType = given ?? declared else {
            throw CommandError(.invalidParameter, "The manifest has no mediaType; give its media type (imageManifestMediaType, or a registry client's Content-Type).")
        }
        self.mediaType = mediaType
        if checkingPush { pushRefusal = Self.pushRefusal(bytes, object) }
        subject = object[member: "subject"]?[member: "digest"]?.string.flatMap { Validation.isRegistryDigest($0) ? $0 : nil }
        if Self.imageTypes.contains(mediaType) {
            guard object[member: "manifests"] == nil else { throw Self.invalid("is an image manifest, which has no 'manifests'") }
            guard let config = object[member: "config"], config.isObject else { throw Self.invalid("must have a 'config' descriptor") }
            self.config = try Self.descriptor(config, in: "config")
            // Non-distributable layers live elsewhere (their `urls`); a registry never holds them.
            layers = try Self.descriptors(object, "layers").filter { !Self.isNondistributable($0.mediaType) }
        } else if Self.indexTypes.contains(mediaType) {
            guard object[member: "config"] == nil, object[member: "layers"] == nil else { throw Self.invalid("is an index, which has no 'config' or 'layers'") }
            images = try Self.descriptors(object, "manifests")
        } else {
            let served = (Self.imageTypes.union(Self.indexTypes)).sorted().joined(separator: ", ")
            throw CommandError(.invalidParameter, "The manifest media type '\(Validation.quoted(mediaType))' is not one this registry stores: \(served).")
        }
    }

    /// What ``pushRefusal`` holds for the manifest `object` parsed from `bytes`.
    private static func pushRefusal(_ bytes: [UInt8], _ object: ParsedJSON) -> CommandError? {
        // Go's JSON decoder (docker's, containerd's) refuses a document that starts with one.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return invalid("starts with a byte-order mark") }
        // The legacy grammar takes texts those decoders refuse (trailing commas), and a name
        // given twice is read as the first by some and the last by others.
        do { try JSONGrammar.check(bytes, refusingDuplicateNames: true) } catch { return invalid("is not JSON as registry clients read it (RFC 8259): \(error)") }
        if object.holdsANumberBeyondADouble {
            return invalid("holds a number beyond a double's range, which registry clients cannot read")
        }
        if let variant = caseVariant(in: object, of: manifestMembers) {
            return invalid("has a member '\(variant)' spelled as a known member in another case")
        }
        var descriptors: [(place: String, value: ParsedJSON)] = ["config", "subject"].compactMap { key in object[member: key].map { (key, $0) } }
        for member in ["layers", "manifests"] {
            for (i, item) in (object[member: member]?.array ?? []).enumerated() { descriptors.append(("\(member)[\(i)]", item)) }
        }
        // Media types are names (RFC 6838): clients print them, and DescribeImages answers one. An
        // empty artifactType is taken as none, as clients that write one mean it.
        func isMediaType(_ value: ParsedJSON, orEmpty: Bool) -> Bool {
            value.string.map { Validation.isMediaType($0) || (orEmpty && $0.isEmpty) } ?? false
        }
        if let type = object[member: "artifactType"], !isMediaType(type, orEmpty: true) {
            return invalid("has an artifactType that is not a media type (type/subtype, RFC 6838)")
        }
        for (place, descriptor) in descriptors where descriptor.isObject {
            if let variant = caseVariant(in: descriptor, of: descriptorMembers) {
                return invalid("has a member '\(variant)' in \(place) spelled as a known member in another case")
            }
            for member in ["mediaType", "artifactType"] {
                if let type = descriptor[member: member], !isMediaType(type, orEmpty: member == "artifactType") {
                    return invalid("has a \(member) in \(place) that is not a media type (type/subtype, RFC 6838)")
                }
            }
            // Blobs and manifests are named by lowercase digests: one named otherwise could be
            // stored, but never fetched by what the manifest says.
            if let digest = descriptor[member: "digest"]?.string, digest != digest.lowercased() {
                return invalid("has a digest in \(place) with capital letters; digests are lowercase")
            }
        }
        if let subject = object[member: "subject"] {
            guard subject.isObject else { return invalid("has a 'subject' that is not a descriptor") }
            do { _ = try descriptor(subject, in: "subject") } catch { return error }
            // The referrers API lists a manifest under its subject's digest as clients write it.
            guard let digest = subject[member: "digest"]?.string, Validation.isRegistryDigest(digest) else {
                return invalid("has a 'subject' whose digest is not sha256 or sha512 in lowercase hex, as the referrers API names manifests")
            }
        }
        return nil
    }

    /// The members of a manifest and of a descriptor that registry clients decode (image-spec
    /// v1.1's manifest, index and descriptor).
    static let manifestMembers = ["schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations"]
    static let descriptorMembers = ["mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"]

    /// A member of `object` that is not one of `known` but matches one as Go's JSON decoders
    /// match names, without regard to case (the long s and the Kelvin sign fold to `s` and `k`):
    /// they would read it as that member, and a later one wins, so a client could see a layer
    /// this parser never checked.
    /// Folds each name once; a name more than three times as long in UTF-8 as the longest known
    /// one cannot fold to it (the widest fold, the Kelvin sign's, takes three bytes to one) and is
    /// not folded at all: a manifest may have hundreds of thousands of members.
    static func caseVariant(in object: ParsedJSON, of known: [String]) -> String? {
        func folded(_ name: String) -> String { name.lowercased().replacingOccurrences(of: "\u{17F}", with: "s") }
        let foldedKnown = Set(known.map(folded)), longest = 3 * (known.map(\.utf8.count).max() ?? 0)
        return object.memberNames.filter { key in
            key.utf8.count <= longest && !known.contains(key) && foldedKnown.contains(folded(key))
        }.min()
    }

    /// The OCI image spec's non-distributable layer types, and Docker's foreign layers.
    static func isNondistributable(_ mediaType: String) -> Bool {
        mediaType.hasPrefix("application/vnd.oci.image.layer.nondistributable.")
            || mediaType == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    }

    /// The array `member` of descriptors (required; it may be empty).
    private static func descriptors(_ object: ParsedJSON, _ member: String) throws(CommandError) -> [Descriptor] {
        guard let list = object[member: member]?.array else { throw invalid("must have a '\(member)' array") }
        var result: [Descriptor] = []
        for (i, item) in list.enumerated() {
            guard item.isObject else { throw invalid("has a \(member)[\(i)] that is not an object") }
            result.append(try Self.descriptor(item, in: "\(member)[\(i)]"))
        }
        return result
    }

    /// A content descriptor: mediaType, a valid digest (returned lowercased, as digests are
    /// stored), and a non-negative whole size.
    private static func descriptor(_ descriptor: ParsedJSON, in place: String) throws(CommandError) -> Descriptor {
        guard let mediaType = descriptor[member: "mediaType"]?.string, !mediaType.isEmpty else { throw invalid("has no mediaType in \(place)") }
        guard let digest = descriptor[member: "digest"]?.string, Validation.isLayerDigest(digest) else { throw invalid("has no valid digest in \(place)") }
        guard let size = descriptor[member: "size"]?.integer, size >= 0 else {
            throw invalid("has no non-negative whole size in \(place)")
        }
        return Descriptor(mediaType: mediaType, digest: digest.lowercased(), size: UInt64(size))
    }

    private static func optionalString(_ object: ParsedJSON, _ member: String, in place: String) throws(CommandError) -> String? {
        guard let value = object[member: member] else { return nil }
        guard let text = value.string else { throw invalid("has a '\(member)' that is not a string") }
        return text
    }

    private static func invalid(_ why: String) -> CommandError {
        CommandError(.invalidParameter, "The imageManifest \(why).")
    }
}

/// Names an image by digest, tag or both (ImageIdentifier).
public struct ImageIdentifier: Sendable, Equatable, Hashable {
    public var imageDigest: String?
    public var imageTag: String?
    public init(imageDigest: String? = nil, imageTag: String? = nil) {
        self.imageDigest = imageDigest
        self.imageTag = imageTag
    }
}

/// Deletes images by digest, or removes tags (deleting an image whose last tag goes).
public struct BatchDeleteImage: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String
    public let imageIds: [ImageIdentifier]
    /// Whether an image whose last tag is removed stays, untagged (a registry client's `DELETE` of
    /// a tag); ECR's BatchDeleteImage deletes it.
    public var keepsUntaggedImages = false

    public init(registryId: String? = nil, repositoryName: String?, imageIds: [ImageIdentifier]?) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let imageIds else { throw Validation.missing("imageIds") }
        guard (1...100).contains(imageIds.count) else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'imageIds' must have between 1 and 100 items; it has \(imageIds.count).")
        }
        // The model's bound on a tag refuses the call, as AWS refuses any member out of its model's
        // bounds; within it, any tag is looked up (images tagged before PutImage's pattern stay
        // deletable), and one that is not there is a failure of its own in the answer.
        for (index, id) in imageIds.enumerated() {
            if let tag = id.imageTag { try Validation.length(tag, member: "imageIds.\(index + 1).member.imageTag", min: 1, max: 300) }
        }
        self.imageIds = imageIds
    }
}
