public import LogHashing
import UploadCore

extension EntryBundle {
    /// The most bytes of records an entry bundle reads at once (after its first): a bundle of 256
    /// entries of 4 MiB manifests (the wide form) is 1 GiB, read and served a slice at a time; a
    /// narrow bundle is refused at its first entry too long for it, without reading the rest.
    public static let sliceBytes = 4 << 20
}

/// The log as a transparency log (RFC 9162, C2SP tlog-tiles), read from any store's snapshot: roots
/// of any size, inclusion and consistency proofs, tiles and entry bundles. Everything is computed
/// from the kept complete-subtree hashes (``StoreSnapshot/merkleNode(level:index:)``), so nothing
/// is rehashed from events, and a backend provides only those reads.
extension StoreSnapshot {
    /// MTH of the first `size` events.
    public func rootHash(size: UInt64) throws -> MerkleTree.Hash {
        guard size > 0 else { return MerkleTree.emptyRoot }
        return try withNodesRead { try MerkleTree.rootHash(0, size, node: $0) }
    }

    /// The RFC 9162 consistency proof from the tree of `first` events to the tree of `second`.
    /// - Throws: ``CommandError`` `.invalidParameter` unless 0 ≤ first ≤ second ≤ the log's size.
    public func consistencyProof(first: UInt64, second: UInt64) throws -> [MerkleTree.Hash] {
        let size = try lastPosition()
        guard first <= second, second <= size else {
            throw CommandError(.invalidParameter, "A consistency proof needs 0 ≤ first ≤ second ≤ \(size), the log's size; got first \(first), second \(second)")
        }
        return try withNodesRead { try MerkleTree.consistencyProof(first: first, second: second, node: $0) }
    }

    /// The RFC 9162 inclusion path of leaf `index` (the event at position `index + 1`) in the tree
    /// of the first `size` events.
    /// - Throws: ``CommandError`` `.invalidParameter` unless 0 ≤ index < size ≤ the log's size.
    public func inclusionPath(leafIndex index: UInt64, size: UInt64) throws -> [MerkleTree.Hash] {
        let logSize = try lastPosition()
        guard index < size, size <= logSize else {
            throw CommandError(.invalidParameter, "An inclusion proof needs 0 ≤ index < size ≤ \(logSize), the log's size; got index \(index), size \(size)")
        }
        return try withNodesRead { try MerkleTree.inclusionPath(leaf: index, size: size, node: $0) }
    }

    /// `proof` with the stored nodes it reads read at once (``MerkleTree/withNodesRead(by:orEach:_:)``):
    /// one query on PostgreSQL, not one per node, on endpoints open to anyone.
    private func withNodesRead<T>(_ proof: ((UInt8, UInt64) throws -> MerkleTree.Hash) throws -> T) throws -> T {
        try MerkleTree.withNodesRead(by: { try merkleNodes(at: $0) }, orEach: { try merkleNode(level: $0, index: $1) }, proof)
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
            var bundle: [UInt8] = [], next = leaves.lowerBound + 1
            while next <= leaves.upperBound {
                guard let slice = try entryBundleSlice(address, from: next, byteBudget: EntryBundle.sliceBytes) else { return nil }
                bundle += slice.bytes
                next = slice.next
            }
            return bundle
        }
    }

    /// Part of the entry bundle at `address`: its entries from position `first` on, up to the
    /// bundle's last, ending once they hold about `byteBudget` bytes (at least one entry), encoded
    /// as in the bundle (the slices of a bundle, in order, are the bundle), and the position after
    /// them. `nil` when an entry is too long for the bundle's lengths.
    /// - Throws: ``StoreError`` `.corrupt` when the log lacks an event the bundle covers;
    ///   ``CommandError`` `.invalidParameter` when `first` is not one of the bundle's positions.
    public func entryBundleSlice(_ address: TileAddress, from first: UInt64, byteBudget: Int) throws -> (bytes: [UInt8], next: UInt64)? {
        guard let leaves = address.leaves, first > leaves.lowerBound, first <= leaves.upperBound else {
            throw CommandError(.invalidParameter, "position \(first) is not in the entry bundle \(address.path)")
        }
        let records = try eventRecords(from: first, count: Int(leaves.upperBound - first + 1), byteBudget: byteBudget)
        guard !records.isEmpty, records.count == Int(leaves.upperBound - first + 1) || records.reduce(0, { $0 + $1.count }) >= byteBudget else {
            throw StoreError(.corrupt, "the log lacks an event between positions \(first) and \(leaves.upperBound)")
        }
        let entries = records.enumerated().map { EntryBundle.entry(position: first + UInt64($0.offset), record: $0.element) }
        guard let bytes = EntryBundle.encode(entries, lengthBytes: address.kind == .entries ? 2 : 4) else { return nil }
        return (bytes, first + UInt64(records.count))
    }
}
