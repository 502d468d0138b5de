import UploadCore
import UploadStore

/// A repository's images read from one snapshot, each at most once and without its manifest: a
/// page of tags names few images, many times (a page of 1,000 of one image's tags read it 1,000
/// times, 1.85 s when its record still held every tag).
struct ImagesReadOnce {
    private let snapshot: any StoreSnapshot
    private let ref: RepositoryRef
    private var read: [String: ImageRecord?] = [:]  // looked up, never iterated

    init(_ snapshot: any StoreSnapshot, _ ref: RepositoryRef) {
        self.snapshot = snapshot
        self.ref = ref
    }

    mutating func image(_ digest: String) throws -> ImageRecord? {
        if let known = read[digest] { return known }
        let image = try snapshot.imageWithoutManifest(ref, digest)
        read[digest] = .some(image)
        return image
    }
}
