import Foundation
import LMDBKit
import LogHashing
public import UploadCore

/// A proof that one event is in the log: the RFC 9162 inclusion path from its leaf to the root of
/// the tree over the first `treeSize` events. It carries the event record itself, so a verifier
/// needs nothing else: ``verify(trustedRoot:)`` works offline.
public struct InclusionProof: Sendable, Equatable {
    public var position: UInt64
    public var treeSize: UInt64
    public var rootHash: String
    public var leafHash: String
    public var path: [String]
    /// The event record, base64: exactly the bytes the log holds at `position`.
    public var record: String

    public var json: JSONValue {
        .object(sorting: [
            ("position", .uint(position)), ("treeSize", .uint(treeSize)), ("rootHash", .string(rootHash)),
            ("leafHash", .string(leafHash)), ("path", .array(path.map(JSONValue.string))), ("record", .string(record)),
        ])
    }

    public init(position: UInt64, treeSize: UInt64, rootHash: String, leafHash: String, path: [String], record: String) {
        self.position = position
        self.treeSize = treeSize
        self.rootHash = rootHash
        self.leafHash = leafHash
        self.path = path
        self.record = record
    }

    /// The members as `audit proof` prints them. Decoded strictly: a position of `-1`, `1.9` or
    /// `true` is no position (a lenient number reader would take them as others).
    private struct Wire: Decodable {
        let position: UInt64, treeSize: UInt64, rootHash: String, leafHash: String, path: [String], record: String
    }

    public init(json text: String) throws {
        guard let o = try? JSONDecoder().decode(Wire.self, from: Data(text.utf8)) else {
            throw ProofRejected("not an inclusion proof: it needs position and treeSize (whole numbers), rootHash, leafHash, path and record")
        }
        self.init(position: o.position, treeSize: o.treeSize, rootHash: o.rootHash, leafHash: o.leafHash, path: o.path, record: o.record)
    }

    /// Checks the proof without the store: the record decodes as an event, hashes to the leaf,
    /// and the path leads from that leaf to the root (and to `trustedRoot`, when given: a root the
    /// auditor recorded earlier; and the tree is of `trustedSize` events, when given: a path
    /// leads to a root for several sizes, so only a size known otherwise is proven).
    /// - Returns: the proven event.
    public func verify(trustedRoot: String? = nil, trustedSize: UInt64? = nil) throws -> EventEnvelope {
        func fail(_ why: String) -> ProofRejected { ProofRejected("the proof does not hold: \(why)") }
        guard let bytes = Data(base64Encoded: record).map(Array.init) else { throw fail("the record is not base64") }
        let envelope: EventEnvelope
        do { envelope = try EventEnvelope(position: position, decoding: bytes) } catch { throw fail("the record does not decode: \(error)") }
        guard Hex.encode(MerkleTree.leafHash(position: position, record: bytes)) == leafHash.lowercased() else {
            throw fail("the record does not hash to the leaf hash")
        }
        guard let leaf = Hex.decode(leafHash), let root = Hex.decode(rootHash),
              let steps = Optional(path.compactMap(Hex.decode)), steps.count == path.count else {
            throw fail("a hash is not hex")
        }
        guard position >= 1, MerkleTree.verifyInclusion(leafHash: leaf, index: position - 1, size: treeSize, path: steps, root: root) else {
            throw fail("the path does not lead from the leaf to the root")
        }
        if let trustedRoot, trustedRoot.lowercased() != rootHash.lowercased() {
            throw fail("the root \(rootHash) is not the trusted root \(trustedRoot)")
        }
        if let trustedSize, trustedSize != treeSize {
            throw fail("the proof is for a tree of \(treeSize) events, not the trusted \(trustedSize)")
        }
        return envelope
    }
}

extension SnapshotReading {
    /// The tree size (events in the log) and the Merkle root over them, hex.
    public func merkleRoot() throws -> (treeSize: UInt64, rootHash: String) {
        try read { snapshot in
            let size = try snapshot.lastPosition()
            return (size, Hex.encode(try snapshot.rootHash(size: size)))
        }
    }

    /// The inclusion proof of the event at `position` against the root of the log's first
    /// `treeSize` events (the current root when `nil`): ``StoreSnapshot/inclusionProof(position:treeSize:)``.
    public func inclusionProof(position: UInt64, treeSize: UInt64? = nil) throws -> InclusionProof {
        try read { try $0.inclusionProof(position: position, treeSize: treeSize) }
    }
}

extension StoreSnapshot {
    /// The inclusion proof of the event at `position` against the root of the log's first
    /// `treeSize` events, the current root when `nil`: an auditor proves an event against a
    /// checkpoint they saved, of a size the log has since grown past.
    public func inclusionProof(position: UInt64, treeSize: UInt64? = nil) throws -> InclusionProof {
        let tail = try lastPosition()
        let size = treeSize ?? tail
        guard size <= tail else {
            throw CommandError(.invalidParameter, "The log holds \(tail) events; there is no tree of \(size)")
        }
        guard size > 0, (1...size).contains(position) else {
            throw CommandError(.invalidParameter, "There is no event at position \(position) in a tree of \(size) events")
        }
        guard let record = try eventRecords(from: position, count: 1).first else {
            throw StoreError(.corrupt, "the log ends at \(tail) but lacks position \(position)")
        }
        return InclusionProof(
            position: position, treeSize: size,
            rootHash: Hex.encode(try rootHash(size: size)),
            leafHash: Hex.encode(MerkleTree.leafHash(position: position, record: record)),
            path: try inclusionPath(leafIndex: position - 1, size: size).map(Hex.encode),
            record: Data(record).base64EncodedString())
    }
}

extension SnapshotReading {
    /// Every UploadInitiated recorded in `since ..< until` (either bound optional), optionally in
    /// one repository, in time order, read through the time index rather than a scan of the log,
    /// then from the log past the projections' checkpoint, a page per snapshot: an
    /// auditor sees every initiation the log holds, even one a writer killed between its two
    /// commits left unprojected, and all of them from the log when the projections are read as
    /// empty (``UnreadableProjections/readAsEmpty``).
    /// - Complexity: O(log n + k + u) for the k initiations of every repository in the range (one
    ///   repository's are filtered from them: the index is keyed for appending, not by repository)
    ///   and the u events past the checkpoint: none, or a batch, but for a writer killed there; the
    ///   whole log for projections read as empty.
    public func initiations(repository: RepositoryRef? = nil, since: Timestamp? = nil, until: Timestamp? = nil) throws -> [EventEnvelope] {
        let wanted = repository?.description
        let (indexed, stretch) = try read { snapshot in
            let indexed = try snapshot.initiationMarks(since: since, until: until).filter { wanted == nil || $0.repository.sameBytes(as: wanted!) }.map { mark in
                try snapshot.initiation(at: mark.position, markedFor: mark.repository)
            }
            return (indexed, try LogStretch(pastTheProjectionsOf: snapshot))
        }
        var found = indexed
        // Decision times never go back along the log, so these come after the index's in time too.
        try forEachEvent(in: stretch) { envelope in
            if case .uploadInitiated(let e) = envelope.event, since.map({ envelope.recordedAt >= $0 }) ?? true,
               until.map({ envelope.recordedAt < $0 }) ?? true,
               repository.map({ $0 == RepositoryRef(registryId: e.registryId, repositoryName: e.repositoryName) }) ?? true {
                found.append(envelope)
            }
            return true
        }
        return found
    }

    /// The position of the UploadInitiated of `uploadId`; `nil` when the log holds none.
    public func initiationPosition(of uploadId: String) throws -> UInt64? {
        let (projected, stretch) = try read { snapshot in (try snapshot.session(uploadId)?.initiatedPosition, try LogStretch(pastTheProjectionsOf: snapshot)) }
        if let projected { return projected }
        var found: UInt64?
        try forEachEvent(in: stretch) { envelope in
            if case .uploadInitiated(let e) = envelope.event, e.uploadId == uploadId { found = envelope.position }
            return found == nil
        }
        return found
    }

    /// Hands `visit` each event of `stretch`, in order, until it returns false: a page per read
    /// snapshot, so that a long stretch (the whole log, for projections read as empty) holds
    /// neither one read transaction open nor every event in memory. Each page's snapshot must
    /// still hold the stretch's last event: a log taken back meanwhile (a PostgreSQL failover that
    /// lost commits) would otherwise cut the stretch short, or mix two histories.
    /// - Throws: ``StoreError`` `.io` when the log changed under the read (read again).
    func forEachEvent(in stretch: LogStretch, _ visit: (EventEnvelope) throws -> Bool) throws {
        var position = stretch.after
        while position < stretch.last {
            let page = try read { snapshot in
                try stretch.check(snapshot)
                return try snapshot.events(after: position, limit: Int(min(256, stretch.last - position)), byteBudget: 1 << 20)
            }
            guard let end = page.last else { throw LogStretch.changed }
            for envelope in page { guard try visit(envelope) else { return } }
            position = end.position
        }
    }
}

/// The events a read found past the projections' checkpoint, up to the log's tail then, with the
/// leaf of that tail: what later snapshots check they still hold.
struct LogStretch {
    let after: UInt64
    let last: UInt64
    let lastLeaf: [UInt8]?

    init(pastTheProjectionsOf snapshot: any StoreSnapshot) throws {
        after = try snapshot.checkpoint()
        last = try snapshot.lastPosition()
        lastLeaf = last > after ? try snapshot.merkleNode(level: 0, index: last - 1) : nil
    }

    func check(_ snapshot: any StoreSnapshot) throws {
        guard let lastLeaf else { return }
        guard try snapshot.lastPosition() >= last, try snapshot.merkleNode(level: 0, index: last - 1) == lastLeaf else { throw Self.changed }
    }

    static let changed = StoreError(.io, "the log changed while it was read (a failover that lost commits, or a restore): read again", isForCallers: true)
}

extension StoreSnapshot {
    /// The initiation the initiations index names at `position` for `repository` (`registryId/name`).
    /// The index is a projection: one that names an event other than an initiation of its
    /// repository would list what the log does not say. (One with a mark removed lists less:
    /// `upload-replay` proves the index equal to the log.)
    /// - Throws: ``StoreError`` `.corrupt` when the log holds another event there.
    public func initiation(at position: UInt64, markedFor repository: String) throws -> EventEnvelope {
        let envelope = try indexedEvent(at: position)
        guard case .uploadInitiated(let e) = envelope.event, e.repository.description.sameBytes(as: repository) else {
            throw StoreError(.corrupt, "the index of initiations names position \(position) for \(repository), but the log holds another event there; run upload-replay")
        }
        return envelope
    }

    /// The event an index names at `position`: the log must hold it, and it must decode.
    public func indexedEvent(at position: UInt64) throws -> EventEnvelope {
        guard position >= 1, let record = try eventRecords(from: position, count: 1).first else {
            throw StoreError(.corrupt, "an index names position \(position), which the log lacks")
        }
        return try EventLog.decode(position: position, record[...])
    }

    /// Decodes the initiations index's entries (time · position → repository) in key order, up to `until`.
    static func initiationMarks(
        _ entries: [(key: [UInt8], value: [UInt8])], until: Timestamp?
    ) throws -> [(position: UInt64, repository: String)] {
        var marks: [(position: UInt64, repository: String)] = []
        for entry in entries {
            let mark = try InitiationMark(entry)
            if let until, mark.recordedAt >= until { break }
            marks.append((mark.position, mark.repository))
        }
        return marks
    }

    /// Hands `visit` the initiations index's entries newest first, from before `cursor` (from the
    /// newest when `nil`), a batch per read, until it returns `false`.
    /// - Returns: whether the index ran out before `visit` stopped.
    @discardableResult
    public func forEachInitiationMark(newestFirstBefore cursor: StoreCursor?, _ visit: (InitiationMark) throws -> Bool) throws -> Bool {
        var cursor = cursor
        while true {
            let marks = try newestInitiationMarks(before: cursor, limit: 500)
            for mark in marks {
                guard try visit(mark) else { return false }
            }
            guard marks.count == 500, let last = marks.last else { return true }
            cursor = last.cursor
        }
    }
}

/// One entry of the auditors' index of initiations, with its place in the index for the next page.
public struct InitiationMark: Sendable {
    public let cursor: StoreCursor
    public let recordedAt: Timestamp
    public let position: UInt64
    /// `registryId/name`.
    public let repository: String

    /// The entry of a key (time · position) and its value.
    init(_ entry: (key: [UInt8], value: [UInt8])) throws {
        guard entry.key.count == 16, let time = BigEndian.uint64(entry.key.prefix(8)), let position = BigEndian.uint64(entry.key.suffix(8)) else {
            throw StoreError(.corrupt, "the initiations index holds a key of \(entry.key.count) bytes, not a time and a position")
        }
        cursor = StoreCursor(key: entry.key)
        recordedAt = Timestamp(millisecondsSinceEpoch: Int64(bitPattern: time))
        self.position = position
        repository = try RepositoryMark(decoding: entry.value).repository
    }
}

/// An inclusion proof that is malformed or does not hold: the caller's input, not a fault of the store.
public struct ProofRejected: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
