public import LogHashing
import UploadCore

/// The log as a transparency log (RFC 9162, C2SP tlog-tiles), read from any store's snapshot: roots
/// of any size, inclusion and consistency proofs, tiles and entry bundles. Everything is computed
/// from the kept complete-subtree hashes (``StoreSnapshot/merkleNode(level:index:)``), so nothing
/// is rehashed from events, and a backend provides only those reads.
extension StoreSnapshot {
    /// MTH of the first `size` events.
    public func rootHash(size: UInt64) throws -> MerkleTree.Hash {
        guard size > 0 else { return MerkleTree.emptyRoot }
        return try MerkleTree.rootHash(0, size, node: merkleNode)
    }

    /// The RFC 9162 consistency proof from the tree of `first` events to the tree of `second`.
    /// - Throws: ``CommandError`` `.invalidParameter` unless 0 ≤ first ≤ second ≤ the log's size.
    public func consistencyProof(first: UInt64, second: UInt64) throws -> [MerkleTree.Hash] {
        let size = try lastPosition()
        guard first <= second, second <= size else {
            throw CommandError(.invalidParameter, "A consistency proof needs 0 ≤ first ≤ second ≤ \(size), the log's size; got first \(first), second \(second)")
        }
        return try MerkleTree.consistencyProof(first: first, second: second, node: merkleNode)
    }

    /// The RFC 9162 inclusion path of leaf `index` (the event at position `index + 1`) in the tree
    /// of the first `size` events.
    /// - Throws: ``CommandError`` `.invalidParameter` unless 0 ≤ index < size ≤ the log's size.
    public func inclusionPath(leafIndex index: UInt64, size: UInt64) throws -> [MerkleTree.Hash] {
        let logSize = try lastPosition()
        guard index < size, size <= logSize else {
            throw CommandError(.invalidParameter, "An inclusion proof needs 0 ≤ index < size ≤ \(logSize), the log's size; got index \(index), size \(size)")
        }
        return try MerkleTree.inclusionPath(leaf: index, size: size, node: merkleNode)
    }

    /// The tile's bytes, or `nil` while the tree is too small to hold all of it.
    /// Entry bundles are `nil` too when an entry is too long for the spec's 16-bit lengths; the
    /// same entries are then served in the wide form (``TileAddress/Kind/wideEntries``).
    public func tile(_ address: TileAddress) throws -> [UInt8]? {
        guard let leaves = address.leaves, leaves.upperBound <= (try lastPosition()) else { return nil }
        switch address.kind {
        case .hashes:
            let nodes = address.nodes
            guard let first = nodes.first else { return [] }
            return try merkleNodes(level: first.level, indices: first.index..<first.index + UInt64(nodes.count)).flatMap { $0 }
        case .entries, .wideEntries:
            let first = leaves.lowerBound + 1
            let records = try eventRecords(from: first, count: address.width)
            guard records.count == address.width else {
                throw StoreError(.corrupt, "the log lacks an event between positions \(first) and \(leaves.upperBound)")
            }
            let entries = records.enumerated().map { EntryBundle.entry(position: first + UInt64($0.offset), record: $0.element) }
            return EntryBundle.encode(entries, lengthBytes: address.kind == .entries ? 2 : 4)
        }
    }
}
