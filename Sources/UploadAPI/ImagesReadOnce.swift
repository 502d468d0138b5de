import UploadCore
import UploadStore

/// A repository's images read from one snapshot, each at most once and without its manifest: a
/// page of tags names few images, many times (a page of 1,000 of one image's tags read it 1,000
/// times, 1.85 s when its record still held every tag), or many images once each, which
/// ``readAhead(_:)`` reads a few to a round trip.
struct ImagesReadOnce {
    private let snapshot: any StoreSnapshot
    private let ref: RepositoryRef
    private var read: [String: ImageRecord?] = [:]  // looked up, never iterated

    init(_ snapshot: any StoreSnapshot, _ ref: RepositoryRef) {
        self.snapshot = snapshot
        self.ref = ref
    }

    /// Reads the images of `digests` not read yet, ``ECRPublicService/imagesDecodedAtOnce`` to a
    /// read: PostgreSQL answered a page of 1,000 tags of distinct images in 1,000 round trips.
    mutating func readAhead(_ digests: [String]) throws {
        var unread: [String] = []
        var seen: Set<String> = []  // asked of, never iterated
        for digest in digests where read[digest] == nil && seen.insert(digest).inserted { unread.append(digest) }
        for start in stride(from: 0, to: unread.count, by: ECRPublicService.imagesDecodedAtOnce) {
            let batch = Array(unread[start..<min(start + ECRPublicService.imagesDecodedAtOnce, unread.count)])
            for (digest, image) in zip(batch, try snapshot.imagesWithoutManifests(ref, batch)) { read[digest] = .some(image) }
        }
    }

    mutating func image(_ digest: String) throws -> ImageRecord? {
        if let known = read[digest] { return known }
        let image = try snapshot.imageWithoutManifest(ref, digest)
        read[digest] = .some(image)
        return image
    }
}
