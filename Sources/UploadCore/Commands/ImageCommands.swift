import Crypto
import Foundation

/// Stores an image manifest under its digest, optionally tagging it.
///
/// The initialiser parses the manifest (to learn the blobs and images it references and its media
/// type) and computes its digest, `sha256:` + hex(SHA-256 of the manifest's UTF-8 bytes): pure
/// computation on the request, so it belongs to validation.
public struct PutImage: Sendable, Equatable {
    public static let maximumManifestBytes = 4_194_304

    public let registryId: String?
    public let repositoryName: String
    /// Exactly as sent; stored byte for byte.
    public let imageManifest: String
    public let imageManifestMediaType: String
    public let imageTag: String?
    public let imageDigest: String
    /// The digest the caller claimed, when it sent one.
    public let claimedDigest: String?
    /// The config's media type, for DescribeImages' `artifactMediaType`.
    public let artifactMediaType: String?
    /// The config blob an image manifest references.
    public let configDigest: String?
    /// The layer blobs an image manifest references, in manifest order.
    public let layerDigests: [String]
    /// Images a manifest list or index references.
    public let referencedImages: [String]

    public init(
        registryId: String? = nil, repositoryName: String?, imageManifest: String?, imageManifestMediaType: String? = nil,
        imageTag: String? = nil, imageDigest: String? = nil
    ) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let imageManifest else { throw Validation.missing("imageManifest") }
        let bytes = Array(imageManifest.utf8)
        guard (1...Self.maximumManifestBytes).contains(bytes.count) else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'imageManifest' must be 1 to \(Self.maximumManifestBytes) bytes; it is \(bytes.count).")
        }
        self.imageManifest = imageManifest
        self.imageTag = try Validation.imageTag(imageTag)
        self.claimedDigest = imageDigest
        self.imageDigest = "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()

        let manifest = try Manifest(parsing: bytes)
        switch (imageManifestMediaType, manifest.mediaType) {
        case (let given?, let declared?) where given != declared:
            throw CommandError(.invalidParameter, "The imageManifestMediaType '\(given)' does not match the manifest's mediaType '\(declared)'.")
        case (let given?, _), (nil, let given?):
            self.imageManifestMediaType = given
        case (nil, nil):
            throw CommandError(.invalidParameter, "The manifest has no mediaType; give imageManifestMediaType.")
        }
        self.artifactMediaType = manifest.configMediaType
        self.configDigest = manifest.config
        self.layerDigests = manifest.layers
        self.referencedImages = manifest.images
    }
}

/// What PutImage needs from a manifest: its media type and the digests it references.
struct Manifest {
    var mediaType: String?
    var configMediaType: String?
    var config: String?
    var layers: [String] = []
    var images: [String] = []

    init(parsing bytes: [UInt8]) throws(CommandError) {
        let invalid = CommandError(.invalidParameter, "The imageManifest is not a JSON object.")
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw invalid }
        mediaType = object["mediaType"] as? String
        if let config = object["config"] as? [String: Any] {
            configMediaType = config["mediaType"] as? String
            self.config = try Self.digest(of: config, in: "config")
        }
        for (i, layer) in (object["layers"] as? [Any] ?? []).enumerated() {
            guard let layer = layer as? [String: Any] else { throw invalid }
            layers.append(try Self.digest(of: layer, in: "layers[\(i)]"))
        }
        for (i, child) in (object["manifests"] as? [Any] ?? []).enumerated() {
            guard let child = child as? [String: Any] else { throw invalid }
            images.append(try Self.digest(of: child, in: "manifests[\(i)]"))
        }
    }

    private static func digest(of descriptor: [String: Any], in place: String) throws(CommandError) -> String {
        guard let digest = descriptor["digest"] as? String, Validation.isLayerDigest(digest) else {
            throw CommandError(.invalidParameter, "The imageManifest's \(place) has no valid digest.")
        }
        return digest.lowercased()  // stored digests are lowercase; the pattern admits upper case
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

    public init(registryId: String? = nil, repositoryName: String?, imageIds: [ImageIdentifier]?) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        guard let imageIds else { throw Validation.missing("imageIds") }
        guard (1...100).contains(imageIds.count) else {
            throw CommandError(.invalidParameter, "1 validation error detected: 'imageIds' must have between 1 and 100 items; it has \(imageIds.count).")
        }
        self.imageIds = imageIds
    }
}
