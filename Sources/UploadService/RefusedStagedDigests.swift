import UploadCore
import UploadStore

/// The digests of staged uploads hashed for a completion that named another one. A completion
/// refused for its digest leaves the upload open (as ECR does), and without this each repeat of
/// it would hash and copy the whole layer again: gigabytes of disk and CPU for a few hundred bytes
/// of request. An entry is keyed by what the log says the staging file holds (its length, the
/// position of the upload's last change and its last part's digest), so it never outlives the
/// bytes it describes, even when a failover loses commits and a part is sent again in their place.
final class RefusedStagedDigests: Sendable {
    struct Key: Hashable, Sendable {
        let uploadId: String
        let bytes: UInt64
        let lastPosition: UInt64
        let lastPartDigest: String?
        let algorithm: DigestAlgorithm

        init(_ session: UploadSession, _ algorithm: DigestAlgorithm) {
            uploadId = session.uploadId
            bytes = session.bytesReceived
            lastPosition = session.lastPosition
            lastPartDigest = session.lastPart?.digest
            self.algorithm = algorithm
        }
    }

    /// Past this many, an entry goes to make room (any one: a forgotten entry costs a hash).
    static let capacity = 1024
    private let entries = Locked<[Key: String]>([:])
    /// Whether a completion of an upload refused before is being hashed now.
    private let checkingARefusedUpload = Locked(false)

    func digest(_ key: Key) -> String? { entries.withLock { $0[key] } }

    /// Whether a completion of `uploadId` was refused for its digest (and is still remembered).
    func hasRefused(_ uploadId: String) -> Bool { entries.withLock { $0.keys.contains { $0.uploadId == uploadId } } }

    /// Runs `hashing` (a completion's hash of its whole layer) for an upload refused before, one
    /// such at a time in this process: a client can add a byte and name a wrong digest again, at
    /// will, each time for a layer's worth of reading and hashing; such repeats take at most one
    /// of the thread pool's threads, which blob downloads and chunks share. - Throws:
    /// ``StoreError/Code/overloaded`` while another is hashed.
    func hashingAgain<T>(_ hashing: () async throws -> T) async throws -> T {
        let entered = checkingARefusedUpload.withLock { busy in
            guard !busy else { return false }
            busy = true
            return true
        }
        guard entered else {
            throw StoreError(.overloaded, "another completion of an upload whose digest was refused is being checked; try again")
        }
        defer { checkingARefusedUpload.withLock { $0 = false } }
        return try await hashing()
    }

    func remember(_ digest: String, for key: Key) {
        entries.withLock { entries in
            if entries.count >= Self.capacity, entries[key] == nil { entries.remove(at: entries.startIndex) }
            entries[key] = digest
        }
    }
}
