import UploadCore

/// A string as a dictionary key, compared by its UTF-8 bytes (``UploadCore/ExactBytes``).
///
/// It carries its hash, computed once from the bytes: a lookup then compares the hashes of the
/// keys it probes, which sit in the dictionary's own storage, and reads a key's bytes (elsewhere
/// in memory) only for a key with the same hash. Comparing the probed keys' bytes, and hashing
/// every key again on each resize, were a third of replay's fold.
struct ExactString: Hashable, Sendable {
    let string: String
    private let fingerprint: Int

    init(_ string: String) {
        self.string = string
        var hasher = Hasher()
        string.hashBytes(into: &hasher)
        fingerprint = hasher.finalize()
    }

    static func == (a: ExactString, b: ExactString) -> Bool {
        a.fingerprint == b.fingerprint && a.string.sameBytes(as: b.string)
    }

    func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }
}

/// A repository as a dictionary key, compared by the bytes of its two names; it carries its hash
/// as ``ExactString`` does.
struct ExactRepository: Hashable, Sendable {
    let ref: RepositoryRef
    private let fingerprint: Int

    init(_ ref: RepositoryRef) {
        self.ref = ref
        var hasher = Hasher()
        ref.registryId.hashBytes(into: &hasher)
        ref.repositoryName.hashBytes(into: &hasher)
        fingerprint = hasher.finalize()
    }

    static func == (a: ExactRepository, b: ExactRepository) -> Bool {
        a.fingerprint == b.fingerprint && a.ref.registryId.sameBytes(as: b.ref.registryId)
            && a.ref.repositoryName.sameBytes(as: b.ref.repositoryName)
    }

    func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }
}
