import UploadCore

/// A dictionary key compared by its bytes (``UploadCore/ExactBytes``), as LMDB compares keys.
///
/// It carries its hash, computed once from the bytes: a lookup then compares the hashes of the
/// keys it probes, which sit in the dictionary's own storage, and reads a key's bytes (elsewhere
/// in memory) only for a key with the same hash. Comparing the probed keys' bytes, and hashing
/// every key again on each resize, were a third of replay's fold.
struct ExactKey<Value: ExactlyCompared>: Hashable, Sendable {
    let value: Value
    private let fingerprint: Int

    init(_ value: Value) {
        self.value = value
        var hasher = Hasher()
        value.hashBytes(into: &hasher)
        fingerprint = hasher.finalize()
    }

    static func == (a: ExactKey, b: ExactKey) -> Bool { a.fingerprint == b.fingerprint && a.value.sameBytes(as: b.value) }

    func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }
}

typealias ExactString = ExactKey<String>
typealias ExactRepository = ExactKey<RepositoryRef>

/// A value that an ``ExactKey`` can hold: compared and hashed by its bytes.
protocol ExactlyCompared: Sendable {
    func sameBytes(as other: Self) -> Bool
    func hashBytes(into hasher: inout Hasher)
}

extension String: ExactlyCompared {}

extension RepositoryRef: ExactlyCompared {
    /// Both names' bytes; each name's length goes into the hash, so "ab" + "c" is not "a" + "bc".
    func sameBytes(as other: RepositoryRef) -> Bool {
        registryId.sameBytes(as: other.registryId) && repositoryName.sameBytes(as: other.repositoryName)
    }

    func hashBytes(into hasher: inout Hasher) {
        registryId.hashBytes(into: &hasher)
        repositoryName.hashBytes(into: &hasher)
    }
}
